package bench

import (
	"context"
	"fmt"
	"io"
)

type scaleReport struct{}

func (s *scaleReport) print(w io.Writer) {}

func (r *runner) runScale(ctx context.Context) error { return fmt.Errorf("not yet") }
