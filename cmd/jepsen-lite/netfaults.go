package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nolaproject/nola/faultinject/nemesis"
)

// netnsCuts are server s's partitions and packet loss in the
// network-namespace mode: nft rules in s's namespace, so real packets are
// dropped (on open connections too) and nothing is reset on heal — TCP
// recovers, or times out, as on a real network.
func netnsCuts(c *cluster, s *server) []*nemesis.FuncFault {
	var etcd []nemesis.Service
	for _, p := range s.etcdPx {
		if svc, err := nemesis.ServiceOf(p.Addr()); err == nil {
			etcd = append(etcd, svc)
		}
	}
	var peers []string
	for _, o := range c.servers {
		if o != s {
			peers = append(peers, o.node.IP)
		}
	}
	clients, _ := nemesis.ServiceOf(c.netns.HostIP() + ":9090")
	return []*nemesis.FuncFault{
		// s from etcd: every packet between s and its etcd proxies.
		nemesis.Switch("partition-etcd", s.id, func(ctx context.Context, on bool) error {
			return s.node.CutRemote(ctx, on, etcd...)
		}, s.id),
		// nola from nola: every packet between s and the other servers
		// (forwarding, both ways).
		nemesis.Switch("partition-peers", s.id, func(ctx context.Context, on bool) error {
			return s.node.Cut(ctx, on, peers...)
		}, s.id),
		// clients from s: packets between the tool's address and s's
		// listen port (the tool's etcd proxies stay reachable).
		nemesis.Switch("partition-clients", s.id, func(ctx context.Context, on bool) error {
			return s.node.CutLocal(ctx, on, clients)
		}, s.id),
		// single-packet loss on s's etcd links (nft numgen).
		nemesis.Switch("loss-etcd", s.id, func(ctx context.Context, on bool) error {
			return s.node.SetLoss(ctx, on, etcd...)
		}, s.id),
	}
}

// etcdCuts are partitions of etcd's own quorum, which only the
// network-namespace mode can make (peer links are not proxied):
//   - etcd-partition: a minority (1 of 3, 2 of 5) cut from the majority;
//     the servers' links to every member stay up, so a server talking to
//     a minority member sees its requests hang;
//   - etcd-leader-isolate: the current leader cut from every other member
//     (it keeps its clients).
func etcdCuts(c *cluster) []*nemesis.FuncFault {
	n := len(c.etcd)
	if n < 3 {
		return nil
	}
	cut := func(ctx context.Context, on bool, minority []int) error {
		in := map[int]bool{}
		for _, i := range minority {
			in[i] = true
		}
		var majority []string
		for j, m := range c.etcd {
			if !in[j] {
				majority = append(majority, m.node.IP)
			}
		}
		var errs []error
		for _, i := range minority {
			errs = append(errs, c.etcd[i].node.Cut(ctx, on, majority...))
		}
		return errors.Join(errs...)
	}
	var out []*nemesis.FuncFault
	for i := range n {
		minority := []int{i}
		target := c.etcd[i].name
		if n == 5 {
			minority = append(minority, (i+1)%n)
			target += "+" + c.etcd[(i+1)%n].name
		}
		out = append(out, nemesis.Switch("etcd-partition", target, func(ctx context.Context, on bool) error {
			return cut(ctx, on, minority)
		}, "etcd"))
	}
	leader := -1
	iso := &nemesis.FuncFault{K: "etcd-leader-isolate", T: "leader", Resource: []string{"etcd"}}
	out = append(out, iso)
	*iso = nemesis.FuncFault{K: iso.K, T: iso.T, Resource: iso.Resource,
		StartFn: func(ctx context.Context) error {
			i, err := c.leader(ctx)
			if err != nil {
				return err
			}
			leader, iso.T = i, c.etcd[i].name
			return cut(ctx, true, []int{i})
		},
		StopFn: func(ctx context.Context) error {
			if leader < 0 {
				return nil
			}
			i := leader
			leader = -1
			return cut(ctx, false, []int{i})
		},
	}
	return out
}

// notInjectable lists the chosen faults this run's mode cannot inject.
func notInjectable(c *cluster, chosen map[string]bool) []string {
	var out []string
	if c.netns == nil {
		for _, k := range netnsOnly {
			if chosen[k] {
				out = append(out, k+" (needs the netns mode)")
			}
		}
	}
	if len(c.etcd) < 3 {
		for _, k := range netnsOnly {
			if chosen[k] && c.netns != nil {
				out = append(out, fmt.Sprintf("%s (needs 3 or 5 etcd members)", k))
			}
		}
	}
	return out
}
