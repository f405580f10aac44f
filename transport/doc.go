// Package transport holds what a user of Postern's libraries configures
// about the network: the QUIC and TLS-over-TCP tuning of a relay,
// connector or agent, and which of the two it uses
// ([Config]), and how a client trusts a relay's certificate ([Trust]: a
// CA pool, or the SHA-256 pin of a self-signed certificate made by
// [SelfSigned]). It knows nothing of identity, policy or bindings; the
// machinery that uses it (listening, dialing, streams as net.Conn,
// splicing) is internal to Postern.
//
// # Overview
//
// Every connection is QUIC with TLS 1.3 and the ALPN "postern/1", or,
// where UDP is blocked, TLS 1.3 over TCP with the same ALPN and the same
// protocol on yamux streams ([Config].Network: a client tries QUIC first
// and falls back after [Config].FallbackDelay). A nil
// *[Config] means defaults sized for a relay carrying many agents rather
// than quic-go's, which suit one client: 1024 streams, 1 MiB stream and
// 2 MiB connection windows that grow to 16 and 64 MiB, a keep-alive every
// 15 s, a 60 s idle timeout.
//
// A relay with a self-signed certificate is trusted by its pin: the
// relay prints it, [Pin] computes it, [ParsePin] checks one a person
// wrote, and [Trust.ClientTLS] builds the client's TLS configuration from
// either a pin or a CA pool.
//
// # Usage
//
//	cert, err := transport.SelfSigned("relay.example.com")
//	if err != nil {
//		log.Fatal(err)
//	}
//	pin := transport.Pin(cert) // give this to agents and connectors
//	tlsConf, err := transport.Trust{Pin: pin}.ClientTLS("relay.example.com")
//	if err != nil {
//		log.Fatal(err)
//	}
package transport
