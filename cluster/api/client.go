package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Error is an error answer of the API, or a failure to reach it.
type Error struct {
	Status int    // HTTP status; 0 when lpd could not be reached
	Msg    string // one line
}

func (e *Error) Error() string { return e.Msg }

// Client talks to one lpd.
type Client struct {
	Base  string // e.g. http://127.0.0.1:7070 or https://lpd.example:7070
	HTTP  *http.Client
	Token string // bearer token sent with every request, when set
	// Header holds further headers sent with every request.
	Header http.Header
}

// NewClient returns a client for the lpd at addr ("http://host:port" or
// "host:port").
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{
		Base: strings.TrimRight(addr, "/"),
		HTTP: &http.Client{Timeout: 30 * time.Second},
	}
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.do(ctx, c.HTTP, method, path, in, out)
	return err
}

// do is Do through hc, returning the answer's header.
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		msg := reason(err)
		var alert tls.AlertError
		switch {
		case errors.As(err, &alert):
			msg = "lpd refused the TLS handshake: " + alert.Error() + " (is the client certificate signed by the cluster's CA?)"
		case strings.HasPrefix(c.Base, "https://") && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)):
			msg += ": lpd closed the TLS connection (is the client certificate signed by the cluster's CA?)"
		}
		return nil, &Error{Msg: fmt.Sprintf("cannot reach lpd at %s: %s", c.Base, msg)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.Header, &Error{Status: resp.StatusCode, Msg: fmt.Sprintf("reading answer of lpd at %s: %s", c.Base, reason(err))}
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("lpd at %s answered %s", c.Base, resp.Status)
		}
		return resp.Header, &Error{Status: resp.StatusCode, Msg: eb.Error}
	}
	if out == nil {
		return resp.Header, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.Header, &Error{Status: resp.StatusCode, Msg: fmt.Sprintf("lpd at %s sent a bad answer: %v", c.Base, err)}
	}
	return resp.Header, nil
}

// reason reduces a transport error to its cause ("connection refused").
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error()
	}
	return err.Error()
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.Do(ctx, http.MethodGet, PathStatus, nil, &s)
	return s, err
}

// Members returns GET /v1/members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var m []Member
	err := c.Do(ctx, http.MethodGet, PathMembers, nil, &m)
	return m, err
}

// Submit sends a plan and its module.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (SubmitResponse, error) {
	var r SubmitResponse
	err := c.Do(ctx, http.MethodPost, PathPlans, req, &r)
	return r, err
}

// Plans returns every plan in submission order.
func (c *Client) Plans(ctx context.Context) ([]PlanDetail, error) {
	var p []PlanDetail
	err := c.Do(ctx, http.MethodGet, PathPlans, nil, &p)
	return p, err
}

// Plan returns one plan with its nodes and history.
func (c *Client) Plan(ctx context.Context, id string) (PlanDetail, error) {
	var p PlanDetail
	err := c.Do(ctx, http.MethodGet, PathPlans+"/"+url.PathEscape(id), nil, &p)
	return p, err
}

// PlanAction posts pause, resume, abort or rollback for a plan.
func (c *Client) PlanAction(ctx context.Context, id, action string) (ActionResponse, error) {
	var r ActionResponse
	err := c.Do(ctx, http.MethodPost, PathPlans+"/"+url.PathEscape(id)+"/"+action, struct{}{}, &r)
	return r, err
}

// Rollback rolls back the latest plan.
func (c *Client) Rollback(ctx context.Context) (ActionResponse, error) {
	var r ActionResponse
	err := c.Do(ctx, http.MethodPost, PathRollback, struct{}{}, &r)
	return r, err
}

// Promote makes a node the active of its pair.
func (c *Client) Promote(ctx context.Context, node string) (ActionResponse, error) {
	var r ActionResponse
	err := c.Do(ctx, http.MethodPost, PathNodes+"/"+url.PathEscape(node)+"/promote", struct{}{}, &r)
	return r, err
}

// RemoveMember removes a node from the cluster (POST
// /v1/nodes/NODE/remove); force removes one that is still alive in gossip.
func (c *Client) RemoveMember(ctx context.Context, node string, force bool) (ActionResponse, error) {
	var r ActionResponse
	path := PathNodes + "/" + url.PathEscape(node) + "/remove"
	if force {
		path += "?force=true"
	}
	err := c.Do(ctx, http.MethodPost, path, struct{}{}, &r)
	return r, err
}

// QueryOptions makes a GET a blocking query: with Index set (from the
// QueryMeta of a previous answer), lpd answers once its state's index is
// past Index, or after Wait (lpd's default and cap: 5 minutes, plus a
// little jitter). Index 0 answers at once.
type QueryOptions struct {
	Index uint64
	Wait  time.Duration
}

// QueryMeta is what an answer says about the state it reflects.
type QueryMeta struct {
	// Index is the answer's X-Lp-Index; 0 when lpd did not send one (an
	// lpd without blocking queries: the caller must pace itself).
	Index uint64
}

// query runs a GET as a blocking query. The HTTP client's timeout is
// stretched to outlast the wait.
func (c *Client) query(ctx context.Context, path string, q QueryOptions, out any) (QueryMeta, error) {
	hc := c.HTTP
	if q.Index > 0 {
		v := url.Values{}
		v.Set("index", strconv.FormatUint(q.Index, 10))
		wait := q.Wait
		if wait <= 0 || wait > MaxQueryWait {
			wait = MaxQueryWait
		}
		v.Set("wait", wait.String())
		path += "?" + v.Encode()
		if need := wait + wait/16 + 30*time.Second; hc.Timeout != 0 && hc.Timeout < need {
			stretched := *hc
			stretched.Timeout = need
			hc = &stretched
		}
	}
	h, err := c.do(ctx, hc, http.MethodGet, path, nil, out)
	var meta QueryMeta
	if h != nil {
		meta.Index, _ = strconv.ParseUint(h.Get(HeaderIndex), 10, 64)
	}
	return meta, err
}

// MaxQueryWait is the longest wait lpd holds a blocking query.
const MaxQueryWait = 5 * time.Minute

// StatusWait is Status as a blocking query (see QueryOptions).
func (c *Client) StatusWait(ctx context.Context, q QueryOptions) (Status, QueryMeta, error) {
	var s Status
	m, err := c.query(ctx, PathStatus, q, &s)
	return s, m, err
}

// MembersWait is Members as a blocking query (see QueryOptions).
func (c *Client) MembersWait(ctx context.Context, q QueryOptions) ([]Member, QueryMeta, error) {
	var ms []Member
	m, err := c.query(ctx, PathMembers, q, &ms)
	return ms, m, err
}

// PlansWait is Plans as a blocking query (see QueryOptions).
func (c *Client) PlansWait(ctx context.Context, q QueryOptions) ([]PlanDetail, QueryMeta, error) {
	var p []PlanDetail
	m, err := c.query(ctx, PathPlans, q, &p)
	return p, m, err
}

// PlanWait is Plan as a blocking query (see QueryOptions).
func (c *Client) PlanWait(ctx context.Context, id string, q QueryOptions) (PlanDetail, QueryMeta, error) {
	var p PlanDetail
	m, err := c.query(ctx, PathPlans+"/"+url.PathEscape(id), q, &p)
	return p, m, err
}
