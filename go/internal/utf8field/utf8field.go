// Package utf8field is the one check of the text the SDK sends: every
// string field of every message, before grpc-go marshals it. Protobuf
// strings must be UTF-8; grpc-go refuses to marshal one that is not with
// INTERNAL "grpc: error while marshaling: string field contains invalid
// UTF-8", which names no field, and on a stream it ends the stream (a
// worker's, with its running tasks). Checked first, the message is refused
// instead with INVALID_ARGUMENT naming the field (as the server names what
// it refuses: "session_id", "fallback.tool", "register.tools[0].description"),
// and a stream the caller sends more on (a worker's) goes on.
//
// Package errand installs the interceptors on every connection it dials
// (they cover the generated stubs called on Client.Conn() too); JSON text
// is checked where it is made (errand.JSONText), so the arguments, a
// result or a detail are named as such.
package utf8field

import (
	"context"
	"fmt"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Check returns an INVALID_ARGUMENT status error naming the first string
// field of m (in field order, nested messages, lists and maps included)
// that is not UTF-8, or nil.
func Check(m proto.Message) error {
	if m == nil {
		return nil
	}
	if path, s, bad := find(m.ProtoReflect(), ""); bad {
		return status.Errorf(codes.InvalidArgument, "%s is not valid UTF-8 (%s): gRPC strings must be UTF-8 text",
			path, Where(s))
	}
	return nil
}

// Where says where s stops being UTF-8: the first bad byte, its offset and
// s (at most 64 bytes of it around that byte), quoted.
func Where(s string) string {
	at := 0
	for at < len(s) {
		r, size := utf8.DecodeRuneInString(s[at:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		at += size
	}
	if at == len(s) {
		return "valid"
	}
	from, to := max(0, at-32), min(len(s), at+32)
	quoted := strconv.Quote(s[from:to])
	if from > 0 {
		quoted = "..." + quoted
	}
	if to < len(s) {
		quoted += "..."
	}
	return fmt.Sprintf("byte 0x%02x at offset %d of %s", s[at], at, quoted)
}

// find walks m's fields in order; path is m's own path ("" at the top).
func find(m protoreflect.Message, path string) (string, string, bool) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			list := v.List()
			for j := 0; j < list.Len(); j++ {
				if p, s, bad := value(fd, list.Get(j), fmt.Sprintf("%s[%d]", name, j)); bad {
					return p, s, true
				}
			}
		case fd.IsMap():
			var p, s string
			var bad bool
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.Value()
				if ks, ok := key.Interface().(string); ok && !utf8.ValidString(ks) {
					p, s, bad = name+" (a key)", ks, true
					return false
				}
				p, s, bad = value(fd.MapValue(), mv, fmt.Sprintf("%s[%q]", name, key.String()))
				return !bad
			})
			if bad {
				return p, s, true
			}
		default:
			if p, s, bad := value(fd, v, name); bad {
				return p, s, true
			}
		}
	}
	return "", "", false
}

// value checks one value of fd's kind: a string, or a message to walk.
func value(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) (string, string, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if s := v.String(); !utf8.ValidString(s) {
			return path, s, true
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return find(v.Message(), path)
	}
	return "", "", false
}

// UnaryInterceptor refuses a request that Check refuses, before sending.
func UnaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok {
		if err := Check(m); err != nil {
			return err
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// StreamInterceptor refuses each message of a stream that Check refuses,
// before sending. On a stream the client sends several messages on (a
// worker's), the refused one is not sent and the stream goes on; a stream
// of one request (Completions, SessionEvents) cannot go on without it, and
// ends, as grpc-go's own marshalling error would end it.
func StreamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if desc.ClientStreams {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &checked{ClientStream: cs}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	cs, err := streamer(ctx, desc, cc, method, append(opts, grpc.OnFinish(func(error) { cancel() }))...)
	if err != nil {
		cancel()
		return nil, err
	}
	return &checked{ClientStream: cs, end: cancel}, nil
}

type checked struct {
	grpc.ClientStream
	end context.CancelFunc // ends a stream of one request when it is refused
}

func (c *checked) SendMsg(m any) error {
	if pm, ok := m.(proto.Message); ok {
		if err := Check(pm); err != nil {
			if c.end != nil {
				c.end()
			}
			return err
		}
	}
	return c.ClientStream.SendMsg(m)
}
