// Rate limits in the web app: with a budget of 3 messages a minute and one warning, the 4th
// message is refused with a warning banner, the 5th blocks the user (red banner, composer off),
// and when the block ends the composer comes back.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { devServer, launch, newUser, shooter, signIn, waitConnection } from "./lib.js";

let server;
let browser;
const shot = shooter("ratelimit");

before(async () => {
  server = await devServer({ RATE_LIMIT_MESSAGE: "3/60s", RATE_LIMIT_WARNINGS: "1", RATE_LIMIT_BLOCK_SECONDS: "6" });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const network of ["websocket", "polling"]) {
  test(`over ${network}: exceed the limit, see the warning, then the block, then recover`, async () => {
    const name = network === "websocket" ? "Erin" : "Frank";
    const user = await newUser(browser, { network });
    const { page } = user;
    await signIn(page, server.url, name);
    await waitConnection(page, "connected", network);
    await page.getByRole("button", { name: "New" }).click();
    await page.getByLabel("People").fill("grace");
    await page.getByRole("button", { name: "Start" }).click();
    await page.locator("#room-title", { hasText: "grace" }).waitFor();
    const input = page.getByLabel("Message", { exact: true });

    for (let i = 1; i <= 3; i++) {
      await input.fill(`Message ${i}`);
      await input.press("Enter");
      await page.locator(`.msg.mine[data-id] .msg-text`, { hasText: `Message ${i}` }).waitFor();
    }
    assert.equal(await page.locator("#limit-banner").isVisible(), false);

    // Over budget: refused, with a warning.
    await input.fill("Message 4");
    await input.press("Enter");
    const banner = page.locator("#limit-banner");
    await page.locator('#limit-banner[data-kind="warning"]').waitFor();
    assert.match(await banner.textContent(), /Slow down: too many messages/);
    await page.locator(".msg.failed .msg-error", { hasText: "Not sent" }).waitFor();
    await shot(page, `${network}-warning`);

    // Keep going: blocked.
    await input.fill("Message 5");
    await input.press("Enter");
    await page.locator('#limit-banner[data-kind="blocked"]').waitFor();
    assert.match(await banner.textContent(), /temporarily blocked\. Too many requests after warnings\. Try again in 0:0\d/);
    assert.equal(await input.isDisabled(), true);
    assert.equal(await page.getByRole("button", { name: "Send" }).isDisabled(), true);
    await shot(page, `${network}-blocked`);

    // The block ends: the banner goes, the composer comes back.
    await banner.waitFor({ state: "hidden", timeout: 15000 });
    assert.equal(await input.isDisabled(), false);
    await shot(page, `${network}-recovered`);
    assert.deepEqual(user.errors, []);
    await user.context.close();
  });
}
