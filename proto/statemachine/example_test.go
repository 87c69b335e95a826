package statemachine_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// brokerAddr is the broker the examples talk to.
func brokerAddr() string {
	if a := os.Getenv("WARREN_BROKER_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5672"
}

// This example embeds the core in a hand-written event loop over a
// net.Conn: one goroutine, read deadlines standing in for the timer. It
// declares a queue, publishes a message with confirms, fetches it back with
// basic.get, deletes the queue and closes.
func Example_eventLoop() {
	nc, err := net.DialTimeout("tcp", brokerAddr(), 5*time.Second)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer nc.Close()

	c, err := statemachine.NewConn(statemachine.Config{
		Auth:           []statemachine.Authenticator{statemachine.PlainAuth{Username: "guest", Password: "guest"}},
		ConnectionName: "statemachine example",
		Heartbeat:      10 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Start(time.Now())

	var (
		out     []byte
		buf     = make([]byte, 64<<10)
		ch      uint16
		queue   = fmt.Sprintf("warren.example.%d", time.Now().UnixNano())
		done    bool
		declare statemachine.Token // the queue.declare's token
		get     statemachine.Token // the basic.get's token
		del     statemachine.Token // the queue.delete's token
		note    = "hello"          // the publish's ref
	)
	for !done {
		// Drain events and react to them.
		for e := c.NextEvent(); e.Kind != statemachine.EventNone; e = c.NextEvent() {
			switch e.Kind {
			case statemachine.EventConnected:
				ch, _ = c.OpenChannel()
				_, _ = c.Call(ch, &frames.ConfirmSelect{})
				declare, _ = c.Call(ch, &frames.QueueDeclare{Queue: queue, AutoDelete: true})
				_, _ = c.Publish(ch, &frames.BasicPublish{RoutingKey: queue}, &proto.Properties{ContentType: "text/plain"}, []byte("hello, sans-IO"), &note)
			case statemachine.EventChannelOpen:
				fmt.Println("channel open")
			case statemachine.EventConfirm:
				for _, p := range e.Publishes {
					fmt.Printf("publish %d (%s) acked: %v\n", p.Seq, *p.Ref.(*string), e.Ack)
				}
				get, _ = c.Call(ch, &frames.BasicGet{Queue: queue, NoAck: true})
			case statemachine.EventReply:
				switch {
				case e.Err != nil:
					fmt.Println(e.Request, "failed:", e.Err)
				case e.Token == declare:
					fmt.Println("queue declared")
				case e.Token == get:
					fmt.Printf("got %q (%s)\n", e.Message.Body, e.Message.Properties.ContentType)
					// A queue read only with basic.get is never auto-deleted:
					// delete it, then close.
					del, _ = c.Call(ch, &frames.QueueDelete{Queue: queue})
				case e.Token == del:
					fmt.Println("queue deleted")
					_ = c.Close(proto.Reply{Text: "bye"})
				}
			case statemachine.EventClosed:
				fmt.Println("closed, error:", e.Err)
				done = true
			}
		}
		// Write what the machine wants to send.
		if out = c.AppendOutbound(out[:0]); len(out) > 0 {
			if _, err := nc.Write(out); err != nil {
				fmt.Println("write:", err)
				return
			}
		}
		if done {
			break
		}
		// Wait for input until the machine's next deadline.
		deadline := c.Deadline()
		if deadline.IsZero() {
			deadline = time.Now().Add(time.Minute)
		}
		_ = nc.SetReadDeadline(deadline)
		n, err := nc.Read(buf)
		if n > 0 {
			_ = c.Feed(buf[:n])
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			c.HandleTimeout(time.Now())
		default:
			c.FeedEOF()
		}
	}
}
