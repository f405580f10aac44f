package wire_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/postern/postern/internal/wire"
)

func Example() {
	// The relay's answer, already on the stream: a denial.
	var answer bytes.Buffer
	wire.WriteFrame(&answer, &wire.Result{Code: wire.CodeDenied, Reason: "policy", Message: "denied by forbid-financial"})
	st := struct {
		io.Reader
		io.Writer
	}{&answer, io.Discard}

	open := func(st io.ReadWriter) error {
		if err := wire.WriteFrame(st, &wire.Open{Binding: "staging-db"}); err != nil {
			return err
		}
		var res wire.Result
		if err := wire.ReadExpected(st, 0, &res); err != nil {
			return err // wraps ErrMalformed, ErrFrameTooLarge or the stream's error
		}
		if res.Code != wire.CodeOK {
			return fmt.Errorf("open refused: %s (%s): %s", res.Code.Text(), res.Reason, res.Message)
		}
		return nil
	}
	fmt.Println(open(st))
	// Output: open refused: denied (policy): denied by forbid-financial
}
