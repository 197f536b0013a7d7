package sim

import (
	"slices"
)

// Minimize shrinks a failing configuration greedily: it drops faults, then
// actors, clients and helpers, fewer operations, a calmer network, while
// fails still holds of the result. The seed stays, but every change
// reshuffles the run, so the result is a small failing configuration, not
// the smallest. It returns the smallest configuration found and its
// result, and how many runs it took.
func Minimize(cfg Config, fails func(*Result) bool) (Config, *Result, int) {
	best := cfg
	bestRes := Run(best)
	runs := 1
	if !fails(bestRes) {
		return cfg, bestRes, runs
	}
	try := func(c Config) bool {
		c.Generated = false
		r := Run(c)
		runs++
		if fails(r) {
			best, bestRes = c, r
			return true
		}
		return false
	}
	for progress := true; progress; {
		progress = false
		// Faults, one at a time, from the last.
		for i := len(best.Faults) - 1; i >= 0; i-- {
			c := best
			c.Faults = slices.Delete(slices.Clone(best.Faults), i, i+1)
			if try(c) {
				progress = true
			}
		}
		// Actors.
		for i := len(best.Actors) - 1; i >= 0 && len(best.Actors) > 1; i-- {
			c := best
			c.Actors = slices.Delete(slices.Clone(best.Actors), i, i+1)
			if try(c) {
				progress = true
			}
		}
		// Helpers, clients, operations, network noise.
		steps := []func(c *Config) bool{
			func(c *Config) bool { return dec(&c.Callers, 0) },
			func(c *Config) bool { return dec(&c.WASMCallers, 0) },
			func(c *Config) bool { return dec(&c.Tickers, 0) },
			func(c *Config) bool { return dec(&c.Clients, 1) },
			func(c *Config) bool {
				if c.Ops <= 10 {
					return false
				}
				c.Ops = c.Ops * 2 / 3
				c.Horizon = c.Horizon * 2 / 3
				return true
			},
			func(c *Config) bool {
				if c.Net.Loss == 0 {
					return false
				}
				c.Net.Loss = 0
				return true
			},
			func(c *Config) bool {
				if c.Net.SpikeProb == 0 {
					return false
				}
				c.Net.SpikeProb = 0
				return true
			},
			func(c *Config) bool {
				// The last server, if no fault names it.
				if c.Servers <= 2 || slices.ContainsFunc(c.Faults, func(f Fault) bool {
					return f.Server == c.Servers-1 || (f.Link == LinkServerServer && f.Peer == c.Servers-1)
				}) {
					return false
				}
				c.Servers--
				c.Rates = slices.Clone(c.Rates[:c.Servers])
				return true
			},
		}
		for _, step := range steps {
			c := best
			c.Faults, c.Actors = slices.Clone(best.Faults), slices.Clone(best.Actors)
			if step(&c) && try(c) {
				progress = true
			}
		}
	}
	return best, bestRes, runs
}

func dec(v *int, floor int) bool {
	if *v <= floor {
		return false
	}
	*v--
	return true
}
