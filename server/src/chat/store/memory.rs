//! The embedded default: everything in one process's memory, gone when it exits.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ChatStore, Cursor, Message, NewMessage, Page, ReadState, Room, RoomSummary, message_id};
use crate::error::StoreResult;
use crate::protocol::now_rfc3339;

/// In-memory [`ChatStore`] with a per-room history cap.
pub struct MemoryStore {
    history_limit: usize,
    // A std Mutex: no lock is held across an await, and every critical section is short.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, RoomData>,
    user_rooms: HashMap<String, BTreeSet<String>>,
}

struct RoomData {
    room: Room,
    /// Retained history; the front is the oldest kept message.
    messages: VecDeque<(u64, Message)>,
    /// Sequence number the next message gets (starts at 1).
    next_seq: u64,
    /// (sender, clientMessageId) → seq, for retained messages only.
    by_client_id: HashMap<(String, String), u64>,
    last_read: HashMap<String, u64>,
}

impl RoomData {
    fn first_seq(&self) -> u64 {
        self.messages.front().map_or(self.next_seq, |(seq, _)| *seq)
    }

    fn get(&self, seq: u64) -> Option<&Message> {
        let first = self.first_seq();
        if seq < first {
            return None;
        }
        self.messages.get((seq - first) as usize).map(|(_, m)| m)
    }

    fn unread(&self, user: &str) -> u64 {
        let read = self.last_read.get(user).copied().unwrap_or(0);
        self.messages.iter().rev().take_while(|(seq, _)| *seq > read).filter(|(_, m)| m.sender_id != user).count()
            as u64
    }
}

impl MemoryStore {
    /// An empty store keeping at most `history_limit` messages per room.
    pub fn new(history_limit: usize) -> Self {
        Self { history_limit: history_limit.max(1), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every mutation is a
        // single step), so keep serving instead of poisoning every later call.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ChatStore for MemoryStore {
    async fn create_room(&self, room: Room) -> StoreResult<(Room, bool)> {
        let mut inner = self.lock();
        if let Some(existing) = inner.rooms.get(&room.id) {
            return Ok((existing.room.clone(), false));
        }
        for user in &room.participant_ids {
            inner.user_rooms.entry(user.clone()).or_default().insert(room.id.clone());
        }
        let data = RoomData {
            room: room.clone(),
            messages: VecDeque::new(),
            next_seq: 1,
            by_client_id: HashMap::new(),
            last_read: HashMap::new(),
        };
        inner.rooms.insert(room.id.clone(), data);
        Ok((room, true))
    }

    async fn room(&self, id: &str) -> StoreResult<Option<Room>> {
        Ok(self.lock().rooms.get(id).map(|r| r.room.clone()))
    }

    async fn room_ids_of(&self, user: &str) -> StoreResult<Vec<String>> {
        Ok(self.lock().user_rooms.get(user).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<RoomSummary>> {
        let inner = self.lock();
        let mut rooms: Vec<RoomSummary> = inner
            .user_rooms
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.rooms.get(id))
            .map(|data| RoomSummary {
                room: data.room.clone(),
                unread_count: data.unread(user),
                last_message: data.messages.back().map(|(_, m)| m.clone()),
            })
            .collect();
        rooms.sort_by(|a, b| super::activity(b).cmp(super::activity(a)));
        Ok(rooms)
    }

    async fn append(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        let mut inner = self.lock();
        let Some(data) = inner.rooms.get_mut(&new.room_id) else {
            return Err(crate::error::StoreError::Internal(format!("append to unknown room {}", new.room_id)));
        };
        if let Some(cid) = &new.client_message_id
            && let Some(&seq) = data.by_client_id.get(&(new.sender_id.clone(), cid.clone()))
            && let Some(stored) = data.get(seq)
        {
            return Ok((stored.clone(), false));
        }
        let seq = data.next_seq;
        data.next_seq += 1;
        let message = Message {
            id: message_id(seq),
            room_id: new.room_id,
            sender_id: new.sender_id,
            content: new.content,
            created_at: now_rfc3339(),
            client_message_id: new.client_message_id,
        };
        if let Some(cid) = &message.client_message_id {
            data.by_client_id.insert((message.sender_id.clone(), cid.clone()), seq);
        }
        data.messages.push_back((seq, message.clone()));
        while data.messages.len() > self.history_limit {
            if let Some((_, old)) = data.messages.pop_front()
                && let Some(cid) = old.client_message_id
            {
                data.by_client_id.remove(&(old.sender_id, cid));
            }
        }
        Ok((message, true))
    }

    async fn messages(&self, room_id: &str, cursor: Cursor) -> StoreResult<Page> {
        let inner = self.lock();
        let Some(data) = inner.rooms.get(room_id) else {
            return Ok(Page { messages: vec![], has_more: false });
        };
        let in_range = |seq: u64| cursor.before.is_none_or(|b| seq < b) && cursor.after.is_none_or(|a| seq > a);
        let page = if cursor.after.is_some() {
            // Forward from the cursor: what a reconnecting client missed, oldest first.
            let mut it = data.messages.iter().filter(|(seq, _)| in_range(*seq));
            let messages: Vec<Message> = it.by_ref().take(cursor.limit).map(|(_, m)| m.clone()).collect();
            Page { messages, has_more: it.next().is_some() }
        } else {
            // Backward from the newest (or from `before`): the latest page, oldest first.
            let mut it = data.messages.iter().rev().filter(|(seq, _)| in_range(*seq));
            let mut messages: Vec<Message> = it.by_ref().take(cursor.limit).map(|(_, m)| m.clone()).collect();
            messages.reverse();
            Page { messages, has_more: it.next().is_some() }
        };
        Ok(page)
    }

    async fn mark_read(&self, room_id: &str, user: &str, seq: u64) -> StoreResult<Option<ReadState>> {
        let mut inner = self.lock();
        let Some(data) = inner.rooms.get_mut(room_id) else { return Ok(None) };
        if seq == 0 || seq >= data.next_seq {
            return Ok(None);
        }
        let read = data.last_read.entry(user.to_owned()).or_insert(0);
        *read = (*read).max(seq);
        let last = *read;
        Ok(Some(ReadState { last_read_message_id: message_id(last), unread_count: data.unread(user) }))
    }

    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::store::RoomKind;

    fn room(id: &str, users: &[&str]) -> Room {
        Room {
            id: id.into(),
            kind: RoomKind::Group,
            name: None,
            participant_ids: users.iter().map(|s| s.to_string()).collect(),
            created_at: now_rfc3339(),
        }
    }

    fn msg(room: &str, from: &str, text: &str, cid: Option<&str>) -> NewMessage {
        NewMessage {
            room_id: room.into(),
            sender_id: from.into(),
            content: text.into(),
            client_message_id: cid.map(Into::into),
        }
    }

    #[tokio::test]
    async fn history_pages_both_ways_and_caps() {
        let store = MemoryStore::new(5);
        store.create_room(room("r", &["a", "b"])).await.unwrap();
        for i in 1..=7 {
            store.append(msg("r", "a", &format!("m{i}"), None)).await.unwrap();
        }
        let latest = store.messages("r", Cursor { limit: 2, ..Default::default() }).await.unwrap();
        assert_eq!(latest.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["m6", "m7"]);
        assert!(latest.has_more);
        let after = store.messages("r", Cursor { after: Some(4), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(after.messages.len(), 3);
        assert!(!after.has_more);
        // Only 5 are retained: m3..m7.
        let all = store.messages("r", Cursor { limit: 100, ..Default::default() }).await.unwrap();
        assert_eq!(all.messages.first().unwrap().content, "m3");
    }

    #[tokio::test]
    async fn client_message_id_is_idempotent_per_sender() {
        let store = MemoryStore::new(100);
        store.create_room(room("r", &["a", "b"])).await.unwrap();
        let (m1, new1) = store.append(msg("r", "a", "hi", Some("c1"))).await.unwrap();
        let (m2, new2) = store.append(msg("r", "a", "hi again", Some("c1"))).await.unwrap();
        assert!(new1 && !new2);
        assert_eq!(m1, m2);
        let (m3, new3) = store.append(msg("r", "b", "hi", Some("c1"))).await.unwrap();
        assert!(new3 && m3.id != m1.id);
    }

    #[tokio::test]
    async fn read_position_never_moves_back() {
        let store = MemoryStore::new(100);
        store.create_room(room("r", &["a", "b"])).await.unwrap();
        for _ in 0..3 {
            store.append(msg("r", "a", "x", None)).await.unwrap();
        }
        assert_eq!(store.mark_read("r", "b", 2).await.unwrap().unwrap().unread_count, 1);
        let back = store.mark_read("r", "b", 1).await.unwrap().unwrap();
        assert_eq!(back.last_read_message_id, message_id(2));
        assert!(store.mark_read("r", "b", 9).await.unwrap().is_none());
    }
}
