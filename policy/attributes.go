package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/cedar-policy/cedar-go/types"
)

// maxAttributeDepth bounds the nesting of sets and records in an attribute:
// a token is small, and anything deeper is an error rather than a stack.
const maxAttributeDepth = 32

// convertAttributes turns a token's free attributes into a Cedar record and
// adds role. A null attribute (nil) is left out, so `principal has x` is
// false for it; any other value Cedar cannot represent is an error, so that
// the request is denied rather than decided on a guess.
func convertAttributes(attrs map[string]any) (types.Record, error) {
	m := make(types.RecordMap, len(attrs)+1)
	for k, v := range attrs {
		if v == nil {
			continue
		}
		cv, err := toValue(v, 0)
		if err != nil {
			return types.Record{}, fmt.Errorf("principal attribute %s: %w", strconv.Quote(k), err)
		}
		m[types.String(k)] = cv
	}
	// role is Postern's, not the token issuer's to choose.
	m["role"] = types.String("agent")
	return types.NewRecord(m), nil
}

func toValue(v any, depth int) (types.Value, error) {
	if depth > maxAttributeDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxAttributeDepth)
	}
	switch x := v.(type) {
	case string:
		return types.String(x), nil
	case bool:
		return types.Boolean(x), nil
	case int:
		return types.Long(x), nil
	case int8:
		return types.Long(x), nil
	case int16:
		return types.Long(x), nil
	case int32:
		return types.Long(x), nil
	case int64:
		return types.Long(x), nil
	case uint:
		return uintToLong(uint64(x))
	case uint8:
		return types.Long(x), nil
	case uint16:
		return types.Long(x), nil
	case uint32:
		return types.Long(x), nil
	case uint64:
		return uintToLong(x)
	case float32:
		return floatToLong(float64(x))
	case float64:
		return floatToLong(x)
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not a 64-bit integer (Cedar numbers are Long)", x)
		}
		return types.Long(n), nil
	case []string:
		vals := make([]types.Value, len(x))
		for i, s := range x {
			vals[i] = types.String(s)
		}
		return types.NewSet(vals...), nil
	case []any:
		vals := make([]types.Value, len(x))
		for i, e := range x {
			if e == nil {
				return nil, fmt.Errorf("element %d is null; Cedar sets cannot hold null", i)
			}
			cv, err := toValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			vals[i] = cv
		}
		return types.NewSet(vals...), nil
	case map[string]string:
		m := make(types.RecordMap, len(x))
		for k, s := range x {
			m[types.String(k)] = types.String(s)
		}
		return types.NewRecord(m), nil
	case map[string]any:
		m := make(types.RecordMap, len(x))
		for k, e := range x {
			if e == nil {
				continue
			}
			cv, err := toValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", strconv.Quote(k), err)
			}
			m[types.String(k)] = cv
		}
		return types.NewRecord(m), nil
	}
	return nil, fmt.Errorf("unsupported type %T", v)
}

func uintToLong(u uint64) (types.Value, error) {
	if u > math.MaxInt64 {
		return nil, fmt.Errorf("%d overflows a Cedar Long", u)
	}
	return types.Long(u), nil
}

// floatToLong accepts the integers that encoding/json decodes as float64.
// Cedar has no floating-point type; a fraction is refused rather than
// rounded or turned into a string, so that no policy compares a guess.
func floatToLong(f float64) (types.Value, error) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return nil, fmt.Errorf("%v is not a number Cedar can represent", f)
	case f != math.Trunc(f):
		return nil, fmt.Errorf("%v is not an integer; Cedar has no floating-point numbers", f)
	case f < -(1<<63) || f >= 1<<63:
		return nil, fmt.Errorf("%v overflows a Cedar Long", f)
	}
	return types.Long(int64(f)), nil
}
