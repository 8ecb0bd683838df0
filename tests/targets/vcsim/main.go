// vcsim for the tests: govmomi's vCenter simulator (SOAP /sdk, NFC uploads, and the vAPI REST endpoint
// for tags), on 127.0.0.1 at a free port. Prints the /sdk URL (with its credentials) and serves until
// SIGTERM/SIGINT. The only accepted login is $VCSIM_USER / $VCSIM_PASSWORD;
// VCSIM_TLS=1 serves HTTPS. Built by tests/targets/conftest.py from Debian's golang-github-vmware-govmomi-dev.
package main

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

func main() {
	model := simulator.VPX()
	defer model.Remove()
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	// Set credentials (not vcsim's default, which accepts any non-empty password): wrong ones are refused.
	login := url.UserPassword(os.Getenv("VCSIM_USER"), os.Getenv("VCSIM_PASSWORD"))
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: login}
	if os.Getenv("VCSIM_TLS") == "1" {
		// HTTPS with the self-signed certificate of Go's httptest: a client that verifies refuses it.
		model.Service.TLS = new(tls.Config)
	}
	// The vAPI REST endpoint (tags) registers itself only when asked to.
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	defer server.Close()
	fmt.Println(server.URL.String())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
