//go:build !race

// The race detector allocates on its own account, so these tests only run
// without it (CI: go test -run Alloc ./...).

package warren

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAllocClientPaths measures the client's allocations per message
// against a scripted broker that does not allocate once serving: with no
// Config.Observer, a publish, a delivery and its ack allocate nothing, and
// a publish with a confirm only its handle (the Confirmation and its
// channel).
func TestAllocClientPaths(t *testing.T) {
	testAllocClientPaths(t, Config{}, 0, 2, 0)
}

// TestAllocClientPathsNopObserver: with a no-op Observer the hooks add no
// allocation either (the state handed to the Publish hook is the
// channel's, reused from one publish to the next).
func TestAllocClientPathsNopObserver(t *testing.T) {
	testAllocClientPaths(t, Config{Observer: NopObserver{}}, 0, 2, 0)
}

// testAllocClientPaths requires the allocations per publish, per
// confirmed publish and per delivery with its ack to be those given.
func testAllocClientPaths(t *testing.T, cfg Config, publishAllocs, confirmAllocs, deliverAllocs float64) {
	t.Run("publish", func(t *testing.T) {
		ctx, _, ch := openAllocPeer(t, cfg, false, nil)
		msg := Publishing{Body: make([]byte, 64)}
		publish := func() {
			if err := ch.Publish(ctx, "", "q", msg); err != nil {
				t.Fatal(err)
			}
		}
		publish()
		require.Equal(t, publishAllocs, testing.AllocsPerRun(2000, publish), "allocations per publish")
	})
	t.Run("publish with confirm", func(t *testing.T) {
		ctx, _, ch := openAllocPeer(t, cfg, true, nil)
		msg := Publishing{Body: make([]byte, 64)}
		publish := func() {
			cf, err := ch.PublishWithConfirm(ctx, "", "q", msg)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := cf.Wait(ctx); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
		publish()
		require.Equal(t, confirmAllocs, testing.AllocsPerRun(1000, publish),
			"allocations per confirmed publish (without an observer: the Confirmation and its channel)")
	})
	t.Run("delivery and ack", func(t *testing.T) {
		deliver := make(chan int)
		ctx, _, ch := openAllocPeer(t, cfg, false, deliver)
		cons, err := ch.Consume(ctx, "q", ConsumeOptions{ConsumerTag: "c"})
		require.NoError(t, err)
		receive := func() {
			deliver <- 1
			d := <-cons.Deliveries()
			if err := d.Ack(false); err != nil {
				t.Fatal(err)
			}
		}
		for range 10 {
			receive()
		}
		require.Equal(t, deliverAllocs, testing.AllocsPerRun(2000, receive), "allocations per delivery and ack")
	})
}
