// CoreDNS for the test node, with only the plugins tests/node/lib/cluster.sh's Corefile uses.
//
// `go install github.com/coredns/coredns` compiles every plugin of CoreDNS's plugin.cfg, the
// cloud ones (route53, azure, clouddns) with their SDKs included; that build was the second most
// expensive of the node tools. This is CoreDNS's own documented way to choose plugins, a main
// package that imports them and sets the directive order, and the kubernetes plugin's client-go
// is the version the control-plane build of scripts/k8s-tools.sh already compiled.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

// The plugins' order in a server block's chain: as in CoreDNS's plugin.cfg.
var directives = []string{"bind", "errors", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
