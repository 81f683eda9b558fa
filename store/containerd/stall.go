package containerd

import (
	"context"
	"errors"
	"fmt"
	"time"

	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	"google.golang.org/grpc"
)

// DefaultStall is how long a call to containerd may go without progress.
const DefaultStall = 2 * time.Minute

// unpackRate is the slowest a layer is taken to unpack at: a call to apply a layer, on which
// containerd reports nothing until it is done, may take its size at this rate on top of the
// stall.
const unpackRate = 1 << 20 // bytes per second

// A StallError ends a call to containerd that made no progress in time. (containerd's
// client keeps its message, not its type.)
type StallError struct {
	Method string // "/containerd.services.content.v1.Content/List"
	After  time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("containerd made no progress on %s for %s", e.Method, e.After)
}

// stallOptions bound every call to containerd: a unary call must be answered within stall
// (an unpack within the time its layer takes at unpackRate too), a stream ends when no
// message passes either way for stall.
func stallOptions(stall time.Duration) []grpc.DialOption {
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		after := stall
		if a, ok := req.(*diffapi.ApplyRequest); ok && a.GetDiff() != nil {
			after += time.Duration(a.GetDiff().GetSize() / unpackRate * int64(time.Second))
		}
		ctx, cancel := context.WithTimeoutCause(ctx, after, &StallError{Method: method, After: after})
		defer cancel()
		return stalled(ctx, invoke(ctx, method, req, reply, cc, opts...))
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, open grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		timer := time.AfterFunc(stall, func() { cancel(&StallError{Method: method, After: stall}) })
		cs, err := open(ctx, desc, cc, method, opts...)
		if err != nil {
			timer.Stop()
			err = stalled(ctx, err)
			cancel(nil)
			return nil, err
		}
		return &stallStream{ClientStream: cs, ctx: ctx, timer: timer, after: stall, cancel: cancel}, nil
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream)}
}

// stalled returns err, or why ctx ended, when a stall ended it.
func stalled(ctx context.Context, err error) error {
	var stall *StallError
	if err != nil && errors.As(context.Cause(ctx), &stall) {
		return stall
	}
	return err
}

// stallStream is a stream whose deadline each message extends; it ends at its first error
// (io.EOF included).
type stallStream struct {
	grpc.ClientStream
	ctx    context.Context
	timer  *time.Timer
	after  time.Duration
	cancel context.CancelCauseFunc
}

func (s *stallStream) SendMsg(m any) error { return s.passed(s.ClientStream.SendMsg(m)) }
func (s *stallStream) RecvMsg(m any) error { return s.passed(s.ClientStream.RecvMsg(m)) }

func (s *stallStream) passed(err error) error {
	if err == nil {
		s.timer.Reset(s.after)
		return nil
	}
	s.timer.Stop()
	return stalled(s.ctx, err)
}
