package mesh_test

import (
	"strings"
	"testing"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/transport"
)

// TestOverTCP runs the mesh's behaviours with the relay listening on TCP
// only (no UDP socket at all) and every agent and connector on TLS over
// TCP: streams, half-close, bulk, policy denial with the deciding policy,
// refusal of pipelined bytes, limits, timeouts, failover between
// connectors, a relay restart, token refresh and expiry, tokens bound to
// a key the client proves in the TLS handshake. The whole suite
// runs so with POSTERN_TEST_NETWORK=tcp.
func TestOverTCP(t *testing.T) {
	t.Setenv(meshtest.EnvNetwork, transport.NetworkTCP)
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"Echo1KiB", TestEcho1KiB},
		{"Bulk8MiBEachWay", TestBulk8MiBEachWay},
		{"HalfClose", TestHalfClose},
		{"DeniedByForbid", TestDeniedByForbid},
		{"UnknownBinding", TestUnknownBinding},
		{"NoConnectorFailsFast", TestNoConnectorFailsFast},
		{"ConnectorGoneFailsFast", TestConnectorGoneFailsFast},
		{"UpstreamRefused", TestUpstreamRefused},
		{"RelayRestart", TestRelayRestart},
		{"ManyStreamsAndLimit", TestManyStreamsAndLimit},
		{"PolicyReloadDeniesWithoutReconnect", TestPolicyReloadDeniesWithoutReconnect},
		{"RoundRobinAndFailover", TestRoundRobinAndFailover},
		{"ShutdownDrains", TestShutdownDrains},
		{"DialEarlyPipelines", TestDialEarlyPipelines},
		{"DialEarlyDenialDiscardsData", TestDialEarlyDenialDiscardsData},
		{"DialEarlyUpstreamFailureOnWrite", TestDialEarlyUpstreamFailureOnWrite},
		{"DialEarlyCloseWriteFirst", TestDialEarlyCloseWriteFirst},
		{"OpenTimeout", TestOpenTimeout},
		{"BadTokensRefused", TestBadTokensRefused},
		{"FrameAndTokenLimits", TestFrameAndTokenLimits},
		{"TokenRefreshKeepsSession", TestTokenRefreshKeepsSession},
		{"ExpiredSessionEnds", TestExpiredSessionEnds},
		{"ConnectorCannotClaimUngrantedService", TestConnectorCannotClaimUngrantedService},
		{"BoundTokens", TestBoundTokens},
		{"BoundTokenRefresh", TestBoundTokenRefresh},
		{"BoundTokenRefreshKeepsSession", TestBoundTokenRefreshKeepsSession},
		{"PolicyReloadCutsLiveStream", TestPolicyReloadCutsLiveStream},
		{"RevocationList", TestRevocationList},
		{"RevokedConnector", TestRevokedConnector},
		{"RedecideManyStreamsKeepsOpening", TestRedecideManyStreamsKeepsOpening},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := meshtest.New(t, meshtest.Options{})
			if m.Network() != transport.NetworkTCP || m.Relay().TCPAddr() == nil || m.Relay().Addr().Network() != "tcp" {
				t.Fatalf("the mesh runs over %s, relay on %v", m.Network(), m.Relay().Addr())
			}
			tt.test(t)
		})
	}
}

func TestNewClientChecksNetwork(t *testing.T) {
	_, err := mesh.NewClient(mesh.Config{Relay: "127.0.0.1:7443", Token: "t", Pin: "sha256:" + strings.Repeat("0", 64), Transport: &transport.Config{Network: "udp"}})
	if err == nil || !strings.Contains(err.Error(), `network "udp": want auto, quic or tcp`) {
		t.Fatalf("NewClient with network udp: %v", err)
	}
}
