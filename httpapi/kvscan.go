package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
)

// KVEntry is one entry in a KV scan. Value is base64; Text repeats it when it
// is valid UTF-8, for people reading the output.
type KVEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Text  string `json:"text,omitempty"`
}

// KVScan is the body of GET /v1/ns/{ns}/actors/{id}/kv: one page.
type KVScan struct {
	Entries []KVEntry `json:"entries"`
	// More reports that the page was cut short (by its limit or its
	// size); Next then is the cursor of the next page.
	More bool   `json:"more"`
	Next string `json:"next,omitempty"`
}

// KVScanQuery selects a page of an actor's KV.
type KVScanQuery struct {
	// Prefix, if non-nil, selects the keys that start with it; otherwise
	// Start and End select [Start, End) (End empty: to the last key).
	Prefix     *string
	Start, End string
	// Cursor continues a scan where the previous page ended (its Next).
	Cursor string
	// Limit bounds the entries (0: the server's default, 100).
	Limit int
}

// EncodeCursor and DecodeCursor convert between a scan cursor and the key
// the next page starts at. Cursors are base64url so that any key survives
// JSON and URLs unchanged.
func encodeCursor(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

func decodeCursor(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "cursor must be the next value of a previous page"}
	}
	return b, nil
}

// prefixEnd returns the first key after every key that starts with p, or
// nil if there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for len(end) > 0 && end[len(end)-1] == 0xff {
		end = end[:len(end)-1]
	}
	if len(end) == 0 {
		return nil
	}
	end[len(end)-1]++
	return end
}

// after returns the first key after k.
func after(k []byte) []byte { return append(bytes.Clone(k), 0) }

// scanKV is the read-only admin view of an actor's KV, one page at a time.
// A page is bounded by entries (limit) and by its encoded size
// (MaxScanBytes); it is read from the store in small batches and written as
// it is read, so a scan over large values pins about a batch of them, not
// the page (issue 10, finding 10).
func (h *Handler) scanKV(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, limit, ok := h.listCall(w, r, 10000)
	if !ok {
		return
	}
	defer cancel()
	q := r.URL.Query()
	ns, id := r.PathValue("ns"), r.PathValue("id")
	var start, end []byte
	if p, ok := q["prefix"]; ok {
		start, end = []byte(p[0]), prefixEnd([]byte(p[0]))
	} else {
		start = []byte(q.Get("start"))
		if e, ok := q["end"]; ok {
			end = []byte(e[0])
		}
	}
	if c, ok := q["cursor"]; ok {
		cur, err := decodeCursor(c[0])
		if err == nil && bytes.Compare(cur, start) < 0 {
			err = &nola.Error{Code: nola.CodeBadRequest, Message: "cursor lies before the scan's start: pass the same prefix or start as for the first page"}
		}
		if err != nil {
			writeError(w, err)
			return
		}
		start = cur
	}
	if end != nil && bytes.Compare(start, end) >= 0 {
		writeJSON(w, http.StatusOK, KVScan{Entries: []KVEntry{}})
		return
	}

	// A batch holds at most about MaxScanBytes of values (each is at
	// most MaxKVValueBytes), but at least 16 entries, so that pages of
	// small values do not take a store round trip per entry.
	batch := max(16, h.opts.MaxScanBytes/max(1, h.srv.Limits().MaxKVValueBytes))
	reg := h.srv.Inspector()
	fetch := func(from []byte, n int) ([]registry.KVPair, bool, error) {
		return reg.ScanKV(ctx, ns, id, from, end, min(n, batch))
	}
	// The first batch is read before the answer starts, so that its
	// errors have their status.
	pairs, more, err := fetch(start, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	pw := pageWriter{w: w, max: h.opts.MaxScanBytes}
	pw.write([]byte(`{"entries":[`))
	sent := 0
	var last []byte
	full := false
	for !full && pw.err == nil {
		for i, p := range pairs {
			if sent == limit {
				full, more = true, true
				break
			}
			enc, err := json.Marshal(entryOf(p))
			if err != nil { // cannot happen: strings only
				pw.err = err
				break
			}
			if sent > 0 && !pw.fits(len(enc)+1, trailerLen(p.Key)) {
				full, more = true, true
				break
			}
			if sent > 0 {
				pw.write([]byte(","))
			}
			pw.write(enc)
			sent++
			last = p.Key
			pairs[i] = registry.KVPair{} // release the value
		}
		if full || !more || pw.err != nil {
			break
		}
		if sent == limit {
			break // more stays true: the store had more
		}
		pairs, more, err = fetch(after(last), limit-sent)
		if err != nil {
			// The client has a page already: end it here and let
			// the next page meet (and report) the error.
			h.log.Warn("KV scan cut short", "ns", ns, "id", id, "err", err)
			more = true
			break
		}
	}
	pw.write([]byte(`],"more":` + strconv.FormatBool(more)))
	if more && last != nil {
		pw.write([]byte(`,"next":"` + encodeCursor(after(last)) + `"`))
	}
	pw.write([]byte("}\n"))
}

func entryOf(p registry.KVPair) KVEntry {
	e := KVEntry{Key: string(p.Key), Value: base64.StdEncoding.EncodeToString(p.Value)}
	if utf8.Valid(p.Value) {
		e.Text = string(p.Value)
	}
	return e
}

// trailerLen is the size of the page's end if it stops after key.
func trailerLen(key []byte) int {
	return len(`],"more":true,"next":""}`+"\n") + base64.RawURLEncoding.EncodedLen(len(key)+1)
}

// pageWriter writes a page and counts its bytes.
type pageWriter struct {
	w      http.ResponseWriter
	n, max int
	err    error
}

func (p *pageWriter) write(b []byte) {
	if p.err != nil {
		return
	}
	var n int
	n, p.err = p.w.Write(b)
	p.n += n
}

// fits reports whether n more bytes, and then a trailer of t bytes, stay
// within the page's bound.
func (p *pageWriter) fits(n, t int) bool { return p.n+n+t <= p.max }
