package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nolaproject/nola/nola"
)

// Client calls the public /v1 API of a nola server. Errors are *nola.Error,
// as in-process.
type Client struct {
	base    string
	shown   string // base for messages: without credentials
	baseErr error  // a server URL that can never work
	token   string
	http    *http.Client
}

// NewClient returns a client of the server at base ("http://host:port";
// a bare "host:port" means http). A URL that cannot work (another scheme,
// no host) makes every call fail with a bad_request error that says why.
func NewClient(base, token string) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c := &Client{token: token, http: &http.Client{Transport: tr}}
	c.base, c.shown, c.baseErr = serverURL(base)
	return c
}

// serverURL checks and normalizes a server URL; shown is it without its
// password, for messages.
func serverURL(base string) (norm, shown string, err error) {
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	if base != "" && !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, perr := url.Parse(base)
	switch {
	case base == "":
		err = &nola.Error{Code: nola.CodeBadRequest, Message: "no server URL"}
	case perr != nil:
		err = &nola.Error{Code: nola.CodeBadRequest, Message: "bad server URL: " + redactParseError(perr)}
	case u.Scheme != "http" && u.Scheme != "https":
		err = &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf("bad server URL: scheme %q (want http or https)", u.Scheme)}
	case u.Host == "":
		err = &nola.Error{Code: nola.CodeBadRequest, Message: "bad server URL: no host"}
	}
	if err != nil {
		return "", "(bad URL)", err
	}
	return base, u.Redacted(), nil
}

// redactParseError is a URL parse error without the URL (it may hold a
// password).
func redactParseError(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return "malformed"
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	return c.doHeader(ctx, method, path, body, nil)
}

func (c *Client) doHeader(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "bad request URL: " + redactParseError(err)}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	setTimeout(ctx, req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportError(ctx, c.shown, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return &nola.Error{Code: nola.CodeInternal, Message: "decoding the response: " + err.Error()}
	}
	return nil
}

// nsPath builds /v1/ns/{ns}/{parts…}. Every element must be non-empty
// (the server has no route for an empty one); "." and ".." are escaped,
// or the server's path cleaning would resolve them.
func nsPath(ns string, parts ...string) (string, error) {
	p := "/v1/ns"
	for i, s := range append([]string{ns}, parts...) {
		switch s {
		case "":
			return "", &nola.Error{Code: nola.CodeBadRequest, Message: "empty " + pathName(i, parts)}
		case ".", "..":
			p += "/" + strings.ReplaceAll(s, ".", "%2E")
		default:
			p += "/" + url.PathEscape(s)
		}
	}
	return p, nil
}

// pathName names element i of a namespace path for an error: the
// namespace, or what the element before it says it is.
func pathName(i int, parts []string) string {
	if i == 0 {
		return "namespace"
	}
	if parts[0] == "workers" {
		// workers/{type}/{op}: by position, whatever the names are.
		switch i {
		case 2:
			return "worker type"
		case 3:
			return "operation"
		}
	}
	if i >= 2 {
		switch parts[i-2] {
		case "actors":
			return "actor ID"
		case "modules":
			return "module ID"
		case "invoke":
			return "operation"
		case "kv":
			return "KV key"
		}
	}
	return "path element"
}

// Invoke calls operation op of actor (ns, id) of type typ (empty: any
// existing type) with payload.
func (c *Client) Invoke(ctx context.Context, ns, id, typ, op string, payload []byte) ([]byte, error) {
	return c.InvokeCreating(ctx, ns, id, typ, op, payload, nil)
}

// InvokeCreating is Invoke that, if the call creates the actor, stores
// args (nil: none) as its creation arguments (the Nola-Creation-Args
// header). They are ignored if the actor exists.
func (c *Client) InvokeCreating(ctx context.Context, ns, id, typ, op string, payload, args []byte) ([]byte, error) {
	path, err := nsPath(ns, "actors", id, "invoke", op)
	if err != nil {
		return nil, err
	}
	if typ != "" {
		path += "?type=" + url.QueryEscape(typ)
	}
	var h http.Header
	if args != nil {
		h = http.Header{HeaderCreationArgs: {base64.StdEncoding.EncodeToString(args)}}
	}
	resp, err := c.doHeader(ctx, http.MethodPost, path, payload, h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readBody(resp.Body, 64<<20)
}

// Create creates actor (ns, id) of type typ with creation arguments args,
// without invoking it; created is false if the actor existed (then
// nothing changed).
func (c *Client) Create(ctx context.Context, ns, id, typ string, args []byte) (created bool, _ error) {
	path, err := nsPath(ns, "actors", id)
	if err != nil {
		return false, err
	}
	if typ == "" {
		return false, &nola.Error{Code: nola.CodeBadRequest, Message: "the actor's type is required to create it"}
	}
	resp, err := c.do(ctx, http.MethodPost, path+"?type="+url.QueryEscape(typ), args)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var out CreateResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<10)).Decode(&out); err != nil {
		return false, &nola.Error{Code: nola.CodeInternal, Message: "decoding the response: " + err.Error()}
	}
	return out.Created, nil
}

// DeleteActor deletes an actor (DELETE /v1/ns/{ns}/actors/{id}). A missing
// actor is an error with nola.CodeNotFound.
func (c *Client) DeleteActor(ctx context.Context, ns, id string) error {
	path, err := nsPath(ns, "actors", id)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// DeleteModule deletes a module (DELETE /v1/ns/{ns}/modules/{id}); while
// actors of its type exist it fails with code "conflict".
func (c *Client) DeleteModule(ctx context.Context, ns, id string) error {
	path, err := nsPath(ns, "modules", id)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// CallWorker runs operation op of the stateless worker type typ in
// namespace ns on the server the client talks to.
func (c *Client) CallWorker(ctx context.Context, ns, typ, op string, payload []byte) ([]byte, error) {
	path, err := nsPath(ns, "workers", typ, op)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, path, payload)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readBody(resp.Body, 64<<20)
}

// PutModule uploads a WASM module.
func (c *Client) PutModule(ctx context.Context, ns, id string, wasm []byte) (ModuleInfo, bool, error) {
	path, err := nsPath(ns, "modules", id)
	if err != nil {
		return ModuleInfo{}, false, err
	}
	resp, err := c.do(ctx, http.MethodPut, path, wasm)
	if err != nil {
		return ModuleInfo{}, false, err
	}
	defer resp.Body.Close()
	var info ModuleInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return ModuleInfo{}, false, &nola.Error{Code: nola.CodeInternal, Message: "decoding the response: " + err.Error()}
	}
	return info, resp.StatusCode == http.StatusCreated, nil
}

// GetModule downloads a module's bytes.
func (c *Client) GetModule(ctx context.Context, ns, id string) ([]byte, error) {
	path, err := nsPath(ns, "modules", id)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readBody(resp.Body, 1<<30)
}

// ListModules lists a namespace's modules.
func (c *Client) ListModules(ctx context.Context, ns string) ([]ModuleInfo, error) {
	var out struct {
		Modules []ModuleInfo `json:"modules"`
	}
	path, err := nsPath(ns, "modules")
	if err != nil {
		return nil, err
	}
	err = c.getJSON(ctx, path, &out)
	return out.Modules, err
}

// ListActors lists a page of a namespace's actors.
func (c *Client) ListActors(ctx context.Context, ns, after string, limit int) (ActorList, error) {
	var out ActorList
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	path, err := nsPath(ns, "actors")
	if err != nil {
		return out, err
	}
	err = c.getJSON(ctx, path+"?"+q.Encode(), &out)
	return out, err
}

// GetKV reads one key of an actor's KV; found is false for a missing key.
func (c *Client) GetKV(ctx context.Context, ns, id, key string) (value []byte, found bool, err error) {
	path, err := nsPath(ns, "actors", id, "kv", key)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		// Only the server's "no such key" means a missing key (not, say,
		// an older server without this endpoint).
		if ne, ok := err.(*nola.Error); ok && ne.Code == codeNotFound && ne.Message == msgNoSuchKey {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body, 64<<20)
	return b, err == nil, err
}

// ScanKV lists an actor's KV entries by prefix (if prefix is non-nil) or in
// [start, end): the first page (see ScanKVPage).
func (c *Client) ScanKV(ctx context.Context, ns, id string, prefix *string, start, end string, limit int) (KVScan, error) {
	return c.ScanKVPage(ctx, ns, id, KVScanQuery{Prefix: prefix, Start: start, End: end, Limit: limit})
}

// ScanKVPage reads one page of an actor's KV. While the answer's More is
// true, set q.Cursor to its Next (keeping the rest of q) for the next page.
func (c *Client) ScanKVPage(ctx context.Context, ns, id string, q KVScanQuery) (KVScan, error) {
	v := url.Values{}
	if q.Prefix != nil {
		v.Set("prefix", *q.Prefix)
	} else {
		if q.Start != "" {
			v.Set("start", q.Start)
		}
		if q.End != "" {
			v.Set("end", q.End)
		}
	}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	var out KVScan
	path, err := nsPath(ns, "actors", id, "kv")
	if err != nil {
		return out, err
	}
	err = c.getJSON(ctx, path+"?"+v.Encode(), &out)
	return out, err
}

// Cluster returns the cluster's status.
func (c *Client) Cluster(ctx context.Context) (ClusterStatus, error) {
	var out ClusterStatus
	err := c.getJSON(ctx, "/v1/cluster", &out)
	return out, err
}
