//go:build !linux

package idle

import "context"

func wait(context.Context) {}
