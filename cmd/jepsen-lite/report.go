package main

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nolaproject/nola/faultinject/exectrace"
)

type opCounts struct {
	OK            int `json:"ok"`
	Failed        int `json:"failed"`
	Indeterminate int `json:"indeterminate"`
}

type recoveryStats struct {
	N       int     `json:"n"`
	P50     float64 `json:"p50_s"`
	Max     float64 `json:"max_s"`
	HealP50 float64 `json:"heal_p50_s"`
	HealMax float64 `json:"heal_max_s"`
}

type summary struct {
	Seed uint64 `json:"seed"`
	Pass bool   `json:"pass"`
	// Violation: a checker found proof of a bug. A run that fails without
	// one is inconclusive (see checkerResult.Violation): it caught
	// nothing, so make jepsen-mutations does not count it as a catch.
	Violation   bool    `json:"violation"`
	WallSeconds float64 `json:"wall_s"`
	// Net is the network mode that ran: "netns" or "loopback"; Mode
	// describes it.
	Net    string `json:"net"`
	Mode   string `json:"mode"`
	Config struct {
		EtcdMembers int    `json:"etcd_members"`
		Servers     int    `json:"servers"`
		Clients     int    `json:"clients"`
		Hot         int    `json:"hot_actors_per_kind"`
		Duration    string `json:"duration"`
		LeaseTTL    string `json:"lease_ttl"`
		Nemeses     string `json:"nemeses"`
		Mutation    string `json:"unsafe_mutation,omitempty"`
	} `json:"config"`
	Ops          opCounts        `json:"ops"`
	FaultsByKind map[string]int  `json:"faults_by_kind"`
	Faults       []faultRecord   `json:"faults"`
	Checks       []checkerResult `json:"checks"`
	Violations   struct {
		Linearizability int `json:"linearizability"`
		LostWrites      int `json:"lost_writes"`
		Oracle          int `json:"oracle"`
		// Answers: objects with a wrong answer (greeters, workers).
		Answers int `json:"answers"`
	} `json:"violations"`
	LostAcked    int                      `json:"lost_acknowledged_writes"`
	Availability map[string]float64       `json:"availability_pct"`
	Recovery     map[string]recoveryStats `json:"recovery"`
	TraceRecords int                      `json:"trace_records"`
	// FirstViolationS is when (seconds into the run) the oracle saw its
	// first violation, -1 if none.
	FirstViolationS float64 `json:"first_oracle_violation_s"`
	// StaleOwner lists the stale-owner nemesis's rounds.
	StaleOwner []staleRound `json:"stale_owner_rounds,omitempty"`
	// NotInjected lists chosen faults this mode could not inject.
	NotInjected []string `json:"not_injected,omitempty"`
}

const (
	modeDesc  = "loopback + per-link TCP proxies (no root needed): clients→server, server→server and server→etcd links are proxied; etcd peer links are direct"
	netnsDesc = "network namespaces: every etcd member and nola server in its own namespace, veth pairs to a bridge namespace; partitions (including etcd's own peer links) and single-packet loss are nft rules in the namespaces; server→etcd links go through TCP proxies on the tool's bridge address for latency and stalls"
)

func summarize(cfg config, seed uint64, w *workload, checks []checkerResult, faults []faultRecord, or exectrace.Result, lost int, netns bool) *summary {
	s := &summary{Seed: seed, Net: "loopback", Mode: modeDesc, Faults: faults, Checks: checks, FaultsByKind: map[string]int{},
		Availability: map[string]float64{}, Recovery: map[string]recoveryStats{}, TraceRecords: or.Records, LostAcked: lost}
	if cfg.embedded {
		s.Mode = "embedded single node: one nola serve on its in-process etcd (fsync on), restarted on the same data directory after kill -9; " + modeDesc
	}
	if netns {
		s.Net, s.Mode = "netns", netnsDesc
	}
	s.Config.EtcdMembers, s.Config.Servers, s.Config.Clients, s.Config.Hot = cfg.members, cfg.servers, cfg.clients, cfg.hot
	s.Config.Duration, s.Config.LeaseTTL, s.Config.Nemeses, s.Config.Mutation = cfg.duration.String(), cfg.ttl.String(), cfg.nemeses, cfg.mutation
	s.Pass = true
	for _, c := range checks {
		s.Pass = s.Pass && c.Ok
		s.Violation = s.Violation || c.Violation
	}
	for _, c := range checks {
		if strings.HasPrefix(c.Name, "linearizable") {
			for _, v := range c.PerActor {
				if strings.HasPrefix(v, "NOT LINEARIZABLE") {
					s.Violations.Linearizability++
				}
			}
		}
		if strings.HasPrefix(c.Name, "right answers") {
			for _, v := range c.PerActor {
				if strings.HasPrefix(v, "WRONG") {
					s.Violations.Answers++
				}
			}
		}
	}
	s.Violations.LostWrites = lost
	s.Violations.Oracle = len(or.Violations)
	s.FirstViolationS = -1
	if len(or.Violations) > 0 {
		// Trace stamps are CLOCK_MONOTONIC; map onto the run's clock.
		off := exectrace.Now() - int64(time.Since(w.t0))
		s.FirstViolationS = float64(or.Violations[0].T-off) / 1e9
	}
	w.mu.Lock()
	ops := slices.Clone(w.ops)
	w.mu.Unlock()
	for _, o := range ops {
		switch o.Outcome {
		case outOK:
			s.Ops.OK++
		case outFail:
			s.Ops.Failed++
		default:
			s.Ops.Indeterminate++
		}
	}
	byKind := map[string][]faultRecord{}
	for _, f := range faults {
		s.FaultsByKind[f.Kind]++
		byKind[f.Kind] = append(byKind[f.Kind], f)
	}
	for kind, fs := range byKind {
		var ok, all int
		for _, o := range ops {
			for _, f := range fs {
				if o.Start >= int64(f.Start) && o.Start < int64(f.End) {
					all++
					if o.Outcome == outOK {
						ok++
					}
					break
				}
			}
		}
		if all > 0 {
			s.Availability[kind] = math.Round(1000*float64(ok)/float64(all)) / 10
		}
		var rec, heal []float64
		for _, f := range fs {
			if f.RecoveryNs >= 0 {
				rec = append(rec, float64(f.RecoveryNs)/1e9)
			}
			if f.HealNs >= 0 {
				heal = append(heal, float64(f.HealNs)/1e9)
			}
		}
		st := recoveryStats{N: len(fs)}
		st.P50, st.Max = pct(rec)
		st.HealP50, st.HealMax = pct(heal)
		s.Recovery[kind] = st
	}
	return s
}

func pct(xs []float64) (p50, mx float64) {
	if len(xs) == 0 {
		return -1, -1
	}
	sort.Float64s(xs)
	return math.Round(xs[len(xs)/2]*1000) / 1000, math.Round(xs[len(xs)-1]*1000) / 1000
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func writeReport(out string, s *summary, w *workload) error {
	if err := writeJSON(filepath.Join(out, "summary.json"), s); err != nil {
		return err
	}
	w.mu.Lock()
	ops := slices.Clone(w.ops)
	w.mu.Unlock()
	if err := writeJSON(filepath.Join(out, "ops.json"), ops); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "report.html"))
	if err != nil {
		return err
	}
	defer f.Close()
	end := int64(0)
	for _, o := range ops {
		end = max(end, o.End)
	}
	for _, fr := range s.Faults {
		end = max(end, int64(fr.End))
	}
	data := struct {
		S          *summary
		Latency    template.HTML
		Throughput template.HTML
		Timeline   template.HTML
	}{s, latencySVG(ops, s.Faults, end), throughputSVG(ops, s.Faults, end), timelineSVG(s.Faults, end)}
	return reportTmpl.Execute(f, data)
}

const (
	svgW, svgH, padL, padB = 960, 220, 50, 25
)

func xOf(t, end int64) float64 { return padL + float64(t)/float64(max(end, 1))*(svgW-padL-10) }

func shade(b *strings.Builder, faults []faultRecord, end int64, top, h float64) {
	for _, f := range faults {
		x0, x1 := xOf(int64(f.Start), end), xOf(int64(f.End), end)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.18"><title>%s %s</title></rect>`,
			x0, top, max(x1-x0, 1), h, kindColor(f.Kind), f.Kind, f.Target)
	}
}

func axis(b *strings.Builder, end int64, ylabel string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, svgH-padB, svgW-10, svgH-padB)
	for s := 0.0; s <= float64(end)/1e9; s += 10 {
		x := xOf(int64(s*1e9), end)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%.0fs</text>`, x, svgH-8, s)
	}
	fmt.Fprintf(b, `<text x="4" y="12" font-size="10">%s</text>`, template.HTMLEscapeString(ylabel))
}

func latencySVG(ops []opRecord, faults []faultRecord, end int64) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, svgW, svgH)
	shade(&b, faults, end, 0, svgH-padB)
	maxLat := 1.0
	for _, o := range ops {
		maxLat = max(maxLat, float64(o.End-o.Start)/1e6)
	}
	// log scale from 0.1 ms to maxLat
	ly := func(ms float64) float64 {
		ms = max(ms, 0.1)
		return (svgH - padB) - (math.Log10(ms)+1)/(math.Log10(maxLat)+1)*(svgH-padB-15)
	}
	step := max(1, len(ops)/6000) // bound the drawing
	for i, o := range ops {
		if i%step != 0 && o.Outcome == outOK {
			continue
		}
		col := map[string]string{outOK: "#2a7", outFail: "#e90", outIndet: "#c22"}[o.Outcome]
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.5" fill="%s"/>`, xOf(o.Start, end), ly(float64(o.End-o.Start)/1e6), col)
	}
	for _, ms := range []float64{1, 10, 100, 1000, 10000} {
		if ms <= maxLat {
			fmt.Fprintf(&b, `<text x="2" y="%.1f" font-size="10">%gms</text>`, ly(ms)+3, ms)
		}
	}
	axis(&b, end, "latency (log): ok green, failed orange, indeterminate red")
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func throughputSVG(ops []opRecord, faults []faultRecord, end int64) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, svgW, svgH)
	shade(&b, faults, end, 0, svgH-padB)
	n := int(end/1e9) + 1
	okN, badN := make([]int, n), make([]int, n)
	for _, o := range ops {
		i := int(o.End / 1e9)
		if i >= n {
			continue
		}
		if o.Outcome == outOK {
			okN[i]++
		} else {
			badN[i]++
		}
	}
	top := 1
	for i := range n {
		top = max(top, okN[i]+badN[i])
	}
	bw := (svgW - padL - 10) / float64(n)
	for i := range n {
		x := padL + float64(i)*bw
		hOK := float64(okN[i]) / float64(top) * (svgH - padB - 15)
		hBad := float64(badN[i]) / float64(top) * (svgH - padB - 15)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2a7"><title>%ds: %d ok</title></rect>`, x, svgH-padB-hOK, max(bw-1, 1), hOK, i, okN[i])
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#c22"><title>%ds: %d failed or indeterminate</title></rect>`, x, svgH-padB-hOK-hBad, max(bw-1, 1), hBad, i, badN[i])
	}
	fmt.Fprintf(&b, `<text x="2" y="%d" font-size="10">%d/s</text>`, 25, top)
	axis(&b, end, "calls completed per second: ok green, failed/indeterminate red")
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func kindColor(k string) string {
	colors := []string{"#d33", "#36c", "#393", "#c6c", "#f80", "#088", "#886", "#a50", "#555"}
	h := 0
	for _, r := range k {
		h = h*31 + int(r)
	}
	return colors[(h%len(colors)+len(colors))%len(colors)]
}

func timelineSVG(faults []faultRecord, end int64) template.HTML {
	var rows []string
	for _, f := range faults {
		r := f.Kind + " " + f.Target
		if !slices.Contains(rows, r) {
			rows = append(rows, r)
		}
	}
	sort.Strings(rows)
	h := 20*len(rows) + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, svgW, h)
	for i, r := range rows {
		fmt.Fprintf(&b, `<text x="2" y="%d" font-size="10">%s</text>`, 20*i+14, template.HTMLEscapeString(r))
	}
	for _, f := range faults {
		i := slices.Index(rows, f.Kind+" "+f.Target)
		x0, x1 := xOf(int64(f.Start), end)+80, xOf(int64(f.End), end)+80
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="14" fill="%s"><title>%s %s %.2fs–%.2fs</title></rect>`,
			x0*0.92, 20*i+3, max((x1-x0)*0.92, 1), kindColor(f.Kind), f.Kind, f.Target, f.Start.Seconds(), f.End.Seconds())
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var reportTmpl = template.Must(template.New("r").Funcs(template.FuncMap{
	"secs": func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) },
	"ns": func(n int64) string {
		if n < 0 {
			return "—"
		}
		return fmt.Sprintf("%.2fs", float64(n)/1e9)
	},
}).Parse(`<!doctype html><html><head><meta charset="utf-8"><title>jepsen-lite seed {{.S.Seed}}</title>
<style>body{font:14px sans-serif;margin:20px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
.pass{color:#070;font-weight:bold}.fail{color:#b00;font-weight:bold}code{font-size:12px}</style></head><body>
<h1>jepsen-lite seed {{.S.Seed}}: {{if .S.Pass}}<span class="pass">PASS</span>{{else}}<span class="fail">FAIL</span>{{end}}</h1>
<p>Mode: {{.S.Mode}}. {{.S.Config.EtcdMembers}} etcd members, {{.S.Config.Servers}} nola servers, {{.S.Config.Clients}} clients,
{{.S.Config.Hot}} hot actors per kind, workload {{.S.Config.Duration}}, lease TTL {{.S.Config.LeaseTTL}}, nemeses {{.S.Config.Nemeses}}{{if .S.Config.Mutation}}, <b>unsafe mutation {{.S.Config.Mutation}}</b>{{end}}. Wall time {{printf "%.0f" .S.WallSeconds}}s.</p>
<p>Calls: {{.S.Ops.OK}} ok, {{.S.Ops.Failed}} failed (retryable: did not happen), {{.S.Ops.Indeterminate}} indeterminate. Trace records: {{.S.TraceRecords}}. Lost acknowledged writes: {{.S.LostAcked}}.</p>
<h2>Checkers</h2>
{{range .S.Checks}}<h3>{{if .Ok}}<span class="pass">ok</span>{{else}}<span class="fail">FAIL</span>{{end}} {{.Name}}</h3>
{{range .Detail}}<div><code>{{.}}</code></div>{{end}}
{{range .Pages}}<div>porcupine visualization: <a href="{{.}}">{{.}}</a></div>{{end}}
<table>{{range $a, $v := .PerActor}}<tr><td>{{$a}}</td><td>{{$v}}</td></tr>{{end}}</table>{{end}}
<h2>Faults</h2>
{{.Timeline}}
<table><tr><th>kind</th><th>availability during</th><th>n</th><th>recovery from start p50 / max</th><th>after heal p50 / max</th></tr>
{{range $k, $v := .S.Recovery}}<tr><td>{{$k}}</td><td>{{index $.S.Availability $k}}%</td><td>{{$v.N}}</td><td>{{$v.P50}}s / {{$v.Max}}s</td><td>{{$v.HealP50}}s / {{$v.HealMax}}s</td></tr>{{end}}</table>
<table><tr><th>kind</th><th>target</th><th>start</th><th>end</th><th>victim actors</th><th>first ok after start</th><th>after heal</th><th>errors</th></tr>
{{range .S.Faults}}<tr><td>{{.Kind}}</td><td>{{.Target}}</td><td>{{secs .Start}}s</td><td>{{secs .End}}s</td><td>{{.Victims}}</td><td>{{ns .RecoveryNs}}</td><td>{{ns .HealNs}}</td><td>{{.StartErr}} {{.StopErr}}</td></tr>{{end}}</table>
{{if .S.NotInjected}}<p>Chosen but not injected in this mode: {{range .S.NotInjected}}{{.}}; {{end}}</p>{{end}}
{{if .S.StaleOwner}}<h3>stale-owner rounds</h3>
<table><tr><th>start</th><th>end</th><th>stalled owner</th><th>new owner (killed)</th><th>inc through the owner</th><th>acknowledged by the new owner before due</th><th>largest</th><th>fresh read</th><th>effective</th><th>note</th></tr>
{{range .S.StaleOwner}}<tr><td>{{printf "%.1f" .StartS}}s</td><td>{{printf "%.1f" .EndS}}s</td><td>{{.Owner}}</td><td>{{.NewOwner}}</td><td>{{.StaleOutcome}}</td><td>{{.NewAcked}}</td><td>{{.LastAcked}}</td><td>{{.FreshRead}}</td><td>{{.Effective}}</td><td>{{.Note}}</td></tr>{{end}}</table>{{end}}
<h2>Latency</h2>{{.Latency}}
<h2>Throughput</h2>{{.Throughput}}
<p>Fault windows are shaded (one colour per kind). Every call is in ops.json; the servers' logs and execution traces in logs/.</p>
</body></html>`))

func printTable(w io.Writer, sums []*summary) {
	fmt.Fprintf(w, "\n%-6s %-5s %7s %8s %7s %7s %6s %5s %5s %6s %5s\n", "seed", "pass", "wall_s", "ok", "failed", "indet", "faults", "lin", "lost", "oracle", "first")
	var tot summary
	for _, s := range sums {
		nf := len(s.Faults)
		fmt.Fprintf(w, "%-6d %-5v %7.0f %8d %7d %7d %6d %5d %5d %6d %5.1f\n", s.Seed, s.Pass, s.WallSeconds, s.Ops.OK, s.Ops.Failed, s.Ops.Indeterminate, nf,
			s.Violations.Linearizability, s.Violations.LostWrites, s.Violations.Oracle, s.FirstViolationS)
		tot.WallSeconds += s.WallSeconds
		tot.Ops.OK += s.Ops.OK
		tot.Ops.Failed += s.Ops.Failed
		tot.Ops.Indeterminate += s.Ops.Indeterminate
		tot.Violations.Linearizability += s.Violations.Linearizability
		tot.Violations.LostWrites += s.Violations.LostWrites
		tot.Violations.Oracle += s.Violations.Oracle
		tot.TraceRecords += nf
	}
	fmt.Fprintf(w, "%-6s %-5s %7.0f %8d %7d %7d %6d %5d %5d %6d\n", "total", "", tot.WallSeconds, tot.Ops.OK, tot.Ops.Failed, tot.Ops.Indeterminate, tot.TraceRecords,
		tot.Violations.Linearizability, tot.Violations.LostWrites, tot.Violations.Oracle)
}

func writeTotals(path string, sums []*summary) error {
	type row struct {
		Seed         uint64                   `json:"seed"`
		Pass         bool                     `json:"pass"`
		Wall         float64                  `json:"wall_s"`
		Ops          opCounts                 `json:"ops"`
		Faults       map[string]int           `json:"faults_by_kind"`
		Violations   any                      `json:"violations"`
		Availability map[string]float64       `json:"availability_pct"`
		Recovery     map[string]recoveryStats `json:"recovery"`
	}
	var rows []row
	for _, s := range sums {
		rows = append(rows, row{s.Seed, s.Pass, s.WallSeconds, s.Ops, s.FaultsByKind, s.Violations, s.Availability, s.Recovery})
	}
	return writeJSON(path, rows)
}
