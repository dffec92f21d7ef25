package main

import (
	"context"
	"time"

	"lp/cluster/api"
)

// queryWait is the wait lpctl asks of a blocking query: lpd's cap, so an
// idle view costs one request per resource every few minutes.
const queryWait = api.MaxQueryWait

// answer is one answer of a followed resource, or the error of one try.
type answer[T any] struct {
	v   T
	err error
}

// follow asks get for a resource in blocking queries (see
// api.QueryOptions) and sends each new answer: at once the first, then
// only when lpd's index moved. A failed try is sent as its error and
// retried after pollInterval. Against an lpd that answers without an index
// (no blocking queries) it falls back to asking every pace. An index that
// goes backwards (another lpd, a restart) starts again from 0. It stops
// when ctx ends.
func follow[T any](ctx context.Context, pace time.Duration, get func(context.Context, api.QueryOptions) (T, api.QueryMeta, error)) <-chan answer[T] {
	ch := make(chan answer[T])
	send := func(u answer[T]) bool {
		select {
		case ch <- u:
			return true
		case <-ctx.Done():
			return false
		}
	}
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		var index uint64
		first := true
		for ctx.Err() == nil {
			v, m, err := get(ctx, api.QueryOptions{Index: index, Wait: queryWait})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				if !send(answer[T]{err: err}) || !sleep(pollInterval) {
					return
				}
			case m.Index == 0: // an lpd without blocking queries
				index, first = 0, false
				if !send(answer[T]{v: v}) || !sleep(pace) {
					return
				}
			case m.Index < index:
				index = 0
			case m.Index > index || first:
				index, first = m.Index, false
				if !send(answer[T]{v: v}) {
					return
				}
			}
		}
	}()
	return ch
}
