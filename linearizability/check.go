package linearizability

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is porcupine's verdict on one object.
type Result = porcupine.CheckResult

// The verdicts.
const (
	Ok      = porcupine.Ok
	Illegal = porcupine.Illegal
	// Unknown: the time budget ran out before a verdict.
	Unknown = porcupine.Unknown
)

// Verdict is the check of one object's sub-history.
type Verdict struct {
	Object string
	Kind   Kind
	Result Result
	// Ops counts the object's operations; Indeterminate how many of them
	// had an unknown outcome.
	Ops, Indeterminate int

	model porcupine.Model
	info  porcupine.LinearizationInfo
}

// Report is the check of a whole history.
type Report struct {
	Verdicts []Verdict
	// Illegal and Unknown count objects with those verdicts; Checked counts
	// objects with a model.
	Illegal, Unknown, Checked int
}

// Ok reports whether no object's history is illegal. (Unknown verdicts
// are not violations; callers report them.)
func (r Report) Ok() bool { return r.Illegal == 0 }

// Failures returns the illegal verdicts.
func (r Report) Failures() []Verdict {
	var out []Verdict
	for _, v := range r.Verdicts {
		if v.Result == Illegal {
			out = append(out, v)
		}
	}
	return out
}

// Check checks every object's operations against its model, spending at
// most budget (wall time) on each object; budget 0 means no limit.
func Check(ops []Op, budget time.Duration) (Report, error) {
	var rep Report
	parts := Partition(ops)
	for _, obj := range Objects(parts) {
		p := parts[obj]
		kind := p[0].Kind
		for _, o := range p {
			if o.Kind != kind {
				return rep, fmt.Errorf("linearizability: object %q has operations of kinds %q and %q", obj, kind, o.Kind)
			}
		}
		v := Verdict{Object: obj, Kind: kind, Ops: len(p)}
		for _, o := range p {
			if o.Indeterminate {
				v.Indeterminate++
			}
		}
		model, ok := Model(kind)
		if !ok {
			model = uncheckedModel()
			v.model = model
			_, v.info = porcupine.CheckOperationsVerbose(model, toPorcupine(p), time.Second)
			v.Result = Ok
			rep.Verdicts = append(rep.Verdicts, v)
			continue
		}
		rep.Checked++
		v.model = model
		v.Result, v.info = porcupine.CheckOperationsVerbose(model, toPorcupine(p), budget)
		switch v.Result {
		case Illegal:
			rep.Illegal++
		case Unknown:
			rep.Unknown++
		}
		rep.Verdicts = append(rep.Verdicts, v)
	}
	return rep, nil
}

// toPorcupine converts one object's operations. An indeterminate operation
// returns after everything else in the partition — it may take effect at
// any instant after its call, or never (then it is linearized last, where
// its unknown output constrains nothing) — unless its effect window is
// known (Onset, Horizon): then it is placed inside the window, and the
// models' "did not happen" branch covers the rest.
func toPorcupine(ops []Op) []porcupine.Operation {
	var end int64
	for _, o := range ops {
		end = max(end, o.Call, o.Return)
	}
	out := make([]porcupine.Operation, len(ops))
	for i, o := range ops {
		ret := o.Return
		// Counters always answer a value, except a delete (not found: ∅).
		outp := output{value: o.Value, found: o.Found || (o.Kind != Register && o.Name != "delete")}
		call := o.Call
		if o.Indeterminate {
			ret = end + 1
			if o.Onset > 0 {
				call = max(o.Onset, o.Call)
			}
			if o.Horizon > 0 {
				ret = max(o.Horizon, call)
			}
			outp = output{unknown: true}
		}
		out[i] = porcupine.Operation{
			ClientId: o.Client,
			Input:    input{name: o.Name, arg: o.Arg},
			Call:     call,
			Output:   outp,
			Return:   ret,
			Metadata: o.Info,
		}
	}
	return out
}

// uncheckedModel accepts everything; it lets unchecked objects be drawn.
func uncheckedModel() porcupine.Model {
	return porcupine.Model{
		Init:              func() any { return 0 },
		Step:              func(state, _, _ any) (bool, any) { return true, state },
		DescribeOperation: describe,
		DescribeState:     func(any) string { return "(unchecked)" },
	}
}

// Annotation marks an interval or instant (in history time) on a drawing:
// an activation's lifetime, a fault, an oracle violation.
type Annotation struct {
	// Tag is the row the annotation is drawn in ("s1", "oracle", …).
	Tag         string
	Start, End  int64
	Description string
	Details     string
	// Alarm draws it in red.
	Alarm bool
}

// WriteHTML draws the verdict as a self-contained HTML page at path.
func (v Verdict) WriteHTML(path string, notes []Annotation) error {
	if v.model.Init == nil {
		return errors.New("linearizability: verdict has no model to draw")
	}
	info := v.info
	anns := make([]porcupine.Annotation, 0, len(notes))
	for _, n := range notes {
		a := porcupine.Annotation{Tag: n.Tag, Start: n.Start, End: n.End, Description: n.Description, Details: n.Details}
		if n.Alarm {
			a.BackgroundColor, a.TextColor = "#f8b4b4", "#600"
		}
		anns = append(anns, a)
	}
	info.AddAnnotations(anns)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("linearizability: %w", err)
	}
	if err := porcupine.VisualizePath(v.model, info, path); err != nil {
		return fmt.Errorf("linearizability: draw %s: %w", v.Object, err)
	}
	return nil
}

// FileName turns an object name into a safe file name component.
func FileName(object string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, object)
}
