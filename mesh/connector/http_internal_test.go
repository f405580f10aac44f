package connector

import (
	"net/http"
	"testing"
)

func TestRelativeToUpstream(t *testing.T) {
	hosts := []string{"10.0.3.7:8080", "api.internal"}
	tests := []struct {
		name, location, want string
	}{
		{name: "the upstream's address", location: "http://10.0.3.7:8080/v1/items?owner=a#top", want: "/v1/items?owner=a#top"},
		{name: "no path", location: "http://10.0.3.7:8080", want: "/"},
		{name: "with user info", location: "http://u:p@10.0.3.7:8080/x", want: "/x"},
		{name: "the Host sent upstream", location: "https://API.internal/login", want: "/login"},
		{name: "the Host sent upstream, default port", location: "https://api.internal:443/login", want: "/login"},
		{name: "another port", location: "http://10.0.3.7:9090/x", want: "http://10.0.3.7:9090/x"},
		{name: "another host", location: "https://sso.example.com/login", want: "https://sso.example.com/login"},
		{name: "already a path", location: "/v1/items", want: "/v1/items"},
		{name: "not http", location: "ftp://10.0.3.7:8080/x", want: "ftp://10.0.3.7:8080/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Location": {tt.location}, "Content-Location": {tt.location}}
			relativeToUpstream(h, hosts)
			if got := h.Get("Location"); got != tt.want {
				t.Errorf("Location %q became %q, want %q", tt.location, got, tt.want)
			}
			if got := h.Get("Content-Location"); got != tt.want {
				t.Errorf("Content-Location %q became %q, want %q", tt.location, got, tt.want)
			}
		})
	}
}
