package forward_test

import (
	"context"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/forward"
)

// Forward local port 5432 to the binding staging-db, as postern forward
// staging-db=127.0.0.1:5432 does.
func Example() {
	client, err := binding.DefaultClient() // POSTERN_RELAY, POSTERN_TOKEN_FILE, ...
	if err != nil {
		log.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	f := &forward.Forwarder{Client: client, Logger: logger}
	ln, err := net.Listen("tcp", "127.0.0.1:5432")
	if err != nil {
		log.Fatal(err)
	}
	go f.Serve(ln, "staging-db")
	// At SIGTERM: stop accepting, let connections finish, cut them at ctx's end.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.Shutdown(ctx)
}
