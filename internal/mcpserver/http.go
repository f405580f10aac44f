package mcpserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// RequestInput is the request tool's input.
type RequestInput struct {
	Method   string            `json:"method,omitempty" jsonschema:"the HTTP method; GET when empty"`
	Path     string            `json:"path" jsonschema:"the path, starting with /, optionally with a ?query"`
	Query    map[string]string `json:"query,omitempty" jsonschema:"query parameters, added to those in path"`
	Headers  map[string]string `json:"headers,omitempty" jsonschema:"request headers; credentials (Authorization, Cookie), Host and hop-by-hop headers are refused: the connector adds the service's credentials itself"`
	Body     string            `json:"body,omitempty" jsonschema:"the request body, as text"`
	MaxBytes int               `json:"max_bytes,omitempty" jsonschema:"return at most this many bytes of the response body (at most the server's limit, which is also the default)"`
}

// RequestOutput is the request tool's result.
type RequestOutput struct {
	Status       int               `json:"status" jsonschema:"the HTTP status code"`
	Headers      map[string]string `json:"headers" jsonschema:"response headers, values of one name joined with a comma; Set-Cookie is left out"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding" jsonschema:"text when the body is UTF-8 text, else base64"`
	Truncated    bool              `json:"truncated" jsonschema:"true when the body was longer than max_bytes"`
}

// refusedHeaders are request headers an agent may not set. Credentials
// are the connector's to add (it replaces what it is configured with;
// an agent that could send its own would hold credentials after all, or
// forward whatever a prompt told it to). Hop-by-hop headers and framing
// belong to the transport.
var refusedHeaders = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Cookie":              true,
	"Host":                true,
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Content-Length":      true,
}

// droppedResponseHeaders are left out of a result: a cookie the
// upstream sets is a credential the model has no use for (it may not
// send one back), and framing headers say nothing about the content.
var droppedResponseHeaders = map[string]bool{
	"Set-Cookie":        true,
	"Connection":        true,
	"Keep-Alive":        true,
	"Transfer-Encoding": true,
}

func (s *Server) addHTTP(sv *served) []string {
	name := ToolName(sv.b.Name, "request")
	// readOnlyHint says what the relay's catalog says: that this agent's
	// policy permits it no write through the binding (its connector
	// refuses any request that is not a read). Otherwise the tool may
	// change things, and MCP's default destructiveHint (true) stands. An
	// API can reach beyond itself (mail, payments, other services): an
	// open world.
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name: name,
		Description: fmt.Sprintf("Send one HTTP request to the API of %s "+
			"Give a path (the binding is the host); returns the status, the headers and at most %d bytes of the body, within %s. "+
			"Postern's connector adds the service's credentials; policy decides whether this agent may open it.",
			about(sv.b), s.cfg.MaxBytes, s.cfg.Timeout),
		Annotations: &mcp.ToolAnnotations{Title: "Request to " + sv.b.Name, ReadOnlyHint: sv.b.ReadOnly, OpenWorldHint: ptr(true)},
	}, func(ctx context.Context, _ *mcp.CallToolRequest, in RequestInput) (*mcp.CallToolResult, RequestOutput, error) {
		start := time.Now()
		out, err := s.request(ctx, sv, in)
		s.logCall(name, sv.b.Name, start, err, "status", out.Status, "bytes", len(out.Body))
		return nil, out, toolError(err)
	})
	return []string{name}
}

func (s *Server) request(ctx context.Context, sv *served, in RequestInput) (RequestOutput, error) {
	out := RequestOutput{Headers: map[string]string{}}
	method := strings.ToUpper(in.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !strings.HasPrefix(in.Path, "/") {
		return out, fmt.Errorf("path %q: want a path starting with / (the binding is the host)", in.Path)
	}
	u, err := url.Parse(in.Path)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return out, fmt.Errorf("path %q: not a path", in.Path)
	}
	if len(in.Query) > 0 {
		q := u.Query()
		for k, v := range in.Query {
			q.Add(k, v)
		}
		u.RawQuery = q.Encode()
	}
	var body io.Reader
	if in.Body != "" {
		body = strings.NewReader(in.Body)
	}
	ctx, cancel := context.WithTimeout(withTool(ctx, ToolName(sv.b.Name, "request")), s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return out, err
	}
	for k, v := range in.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if refusedHeaders[ck] || strings.HasPrefix(ck, "Proxy-") {
			return out, fmt.Errorf("header %s may not be set: the connector adds credentials, and the transport its own headers", ck)
		}
		req.Header.Set(ck, v)
	}
	hc, err := sv.h.HTTPClient()
	if err != nil {
		return out, err
	}
	// Redirects are the model's to follow, with a request it can see.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		return out, unwrapURLError(err)
	}
	defer resp.Body.Close()
	max := limit(in.MaxBytes, s.cfg.MaxBytes)
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(max)+1))
	if err != nil {
		return out, fmt.Errorf("reading the response body: %w", err)
	}
	if len(b) > max {
		b, out.Truncated = b[:max], true
	}
	if reason := resp.Header.Get("X-Postern-Error"); reason != "" {
		// The connector's own answer, not the API's (the connector strips
		// the header from upstream responses): a denial naming its
		// policies, or an upstream it could not reach.
		return out, connectorError(resp.StatusCode, reason, b)
	}
	out.Status = resp.StatusCode
	for k, vs := range resp.Header {
		if !droppedResponseHeaders[k] {
			out.Headers[k] = strings.Join(vs, ", ")
		}
	}
	text := utf8.Valid(b)
	if !text && out.Truncated {
		// A cut may split a character: text whose only flaw is its last
		// few bytes is still text.
		for i := 1; i < utf8.UTFMax && i < len(b); i++ {
			if utf8.Valid(b[:len(b)-i]) {
				b, text = b[:len(b)-i], true
				break
			}
		}
	}
	if text && !strings.ContainsRune(string(b), 0) {
		out.Body, out.BodyEncoding = string(b), "text"
	} else {
		out.Body, out.BodyEncoding = base64.StdEncoding.EncodeToString(b), "base64"
	}
	return out, nil
}

// unwrapURLError drops net/http's "Get "/x": " prefix, whose URL the
// model wrote itself, and keeps the cause (a *postern.Error naming the
// deciding policy, say).
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// connectorError turns the connector's own HTTP answer (X-Postern-Error)
// into the tool error the model reads: its message, which names the
// deciding policies of a denial.
func connectorError(status int, reason string, body []byte) error {
	var j struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &j) == nil && j.Message != "" {
		msg = j.Message
	}
	if msg == "" {
		msg = "postern: " + reason
	}
	return fmt.Errorf("%s (HTTP %d from Postern's connector, not from the API)", msg, status)
}
