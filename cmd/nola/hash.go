package main

import (
	"time"

	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/storeless"
)

// validateHash checks the store-less flags: --peers and --peers-dns only
// with --registry hash, and at least one of them there.
func (c *serveConfig) validateHash() error {
	switch c.registry {
	case "store":
		if c.peers != "" || c.peersDNS != "" {
			return usageErr("--peers and --peers-dns are for --registry hash (store-less mode)")
		}
		return nil
	case "hash":
	default:
		return usageErr("--registry must be store or hash, not %q", c.registry)
	}
	if c.peers == "" && c.peersDNS == "" {
		return usageErr("--registry hash needs --peers URL,URL,... or --peers-dns NAME:PORT")
	}
	if c.probeEvery < 10*time.Millisecond || c.probeMax <= 0 || c.probeMax > time.Minute {
		return usageErr("--probe-interval must be at least 10ms and --probe-timeout between 0 and 1m")
	}
	if _, err := storeless.ParsePeers(c.peers); err != nil {
		return usageErr("--peers: %v", err)
	}
	if c.peersDNS != "" {
		if _, err := storeless.ParseDNS(c.peersDNS); err != nil {
			return usageErr("%v", err)
		}
	}
	return nil
}

// hashOptions is the store (none in store-less mode) and the store-less
// options the flags ask for.
func (c *serveConfig) hashOptions() (node.Store, *node.Hash, error) {
	if c.registry != "hash" {
		return c.storeOptions(), nil, nil
	}
	peers, err := storeless.ParsePeers(c.peers)
	if err != nil {
		return node.Store{}, nil, usageErr("--peers: %v", err)
	}
	h := &node.Hash{Peers: peers, Interval: c.probeEvery, ProbeTimeout: c.probeMax}
	if c.peersDNS != "" {
		d, err := storeless.ParseDNS(c.peersDNS)
		if err != nil {
			return node.Store{}, nil, usageErr("%v", err)
		}
		h.DNS = &d
	}
	return node.Store{}, h, nil
}
