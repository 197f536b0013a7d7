package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nolaproject/nola/nola"
)

// Client calls the public /v1 API of a nola server. Errors are *nola.Error,
// as in-process.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the server at base ("http://host:port").
func NewClient(base, token string) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "bad server URL: " + err.Error()}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	setTimeout(ctx, req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportError(ctx, c.base, err)
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

func nsPath(ns string, parts ...string) string {
	p := "/v1/ns/" + url.PathEscape(ns)
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// Invoke calls operation op of actor (ns, id) of type typ (empty: any
// existing type) with payload.
func (c *Client) Invoke(ctx context.Context, ns, id, typ, op string, payload []byte) ([]byte, error) {
	path := nsPath(ns, "actors", id, "invoke", op)
	if typ != "" {
		path += "?type=" + url.QueryEscape(typ)
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
	resp, err := c.do(ctx, http.MethodPut, nsPath(ns, "modules", id), wasm)
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
	resp, err := c.do(ctx, http.MethodGet, nsPath(ns, "modules", id), nil)
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
	err := c.getJSON(ctx, nsPath(ns, "modules"), &out)
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
	err := c.getJSON(ctx, nsPath(ns, "actors")+"?"+q.Encode(), &out)
	return out, err
}

// GetKV reads one key of an actor's KV; found is false for a missing key.
func (c *Client) GetKV(ctx context.Context, ns, id, key string) (value []byte, found bool, err error) {
	resp, err := c.do(ctx, http.MethodGet, nsPath(ns, "actors", id, "kv", key), nil)
	if err != nil {
		if ne, ok := err.(*nola.Error); ok && ne.Code == codeNotFound {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body, 64<<20)
	return b, err == nil, err
}

// ScanKV lists an actor's KV entries by prefix (if prefix is non-nil) or in
// [start, end).
func (c *Client) ScanKV(ctx context.Context, ns, id string, prefix *string, start, end string, limit int) (KVScan, error) {
	q := url.Values{}
	if prefix != nil {
		q.Set("prefix", *prefix)
	} else {
		if start != "" {
			q.Set("start", start)
		}
		if end != "" {
			q.Set("end", end)
		}
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out KVScan
	err := c.getJSON(ctx, nsPath(ns, "actors", id, "kv")+"?"+q.Encode(), &out)
	return out, err
}

// Cluster returns the cluster's status.
func (c *Client) Cluster(ctx context.Context) (ClusterStatus, error) {
	var out ClusterStatus
	err := c.getJSON(ctx, "/v1/cluster", &out)
	return out, err
}
