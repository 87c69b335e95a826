package warren

import (
	"io"
	"net"
	"sync"
	"testing"
)

// faultProxy is a TCP proxy between the client and the broker that
// produces the network faults a real broker will not: it cuts
// connections, black-holes them (stops forwarding without closing), holds
// back the client's bytes, and refuses new connections.
type faultProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	links   []*proxyLink
	refuse  bool
	accepts int
}

// proxyLink is one proxied connection.
type proxyLink struct {
	client, broker net.Conn

	mu         sync.Mutex
	blackhole  bool // forward nothing either way (and close nothing)
	holdClient bool // drop the client's bytes
}

// newFaultProxy starts a proxy to target; it stops when the test ends.
func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.stop)
	return p
}

// Addr is the address clients dial.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// URL is an amqp URI through the proxy, with query appended.
func (p *faultProxy) URL(query string) string {
	return "amqp://guest:guest@" + p.Addr() + "/" + query
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.accepts++
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &proxyLink{client: c, broker: b}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, b, c, true)
		go p.pipe(l, c, b, false)
	}
}

// pipe copies src to dst, dropping what a fault says to drop.
func (p *faultProxy) pipe(l *proxyLink, dst, src net.Conn, fromClient bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			drop := l.blackhole || (fromClient && l.holdClient)
			l.mu.Unlock()
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
		}
		if err != nil {
			l.mu.Lock()
			hole := l.blackhole
			l.mu.Unlock()
			if !hole || err != io.EOF {
				// Closing both ends makes the other pipe end too. A
				// black-holed link stays open until the test ends.
				if !hole {
					l.client.Close()
					l.broker.Close()
				}
			}
			return
		}
	}
}

// each applies f to every current link.
func (p *faultProxy) each(f func(*proxyLink)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.mu.Lock()
		f(l)
		l.mu.Unlock()
	}
}

// Cut closes every current connection, both ways.
func (p *faultProxy) Cut() {
	p.mu.Lock()
	links := p.links
	p.links = nil
	p.mu.Unlock()
	for _, l := range links {
		l.client.Close()
		l.broker.Close()
	}
}

// Blackhole makes every current connection go silent both ways, without
// closing it: only heartbeats can tell.
func (p *faultProxy) Blackhole() { p.each(func(l *proxyLink) { l.blackhole = true }) }

// HoldClient drops, from now on, what the client sends on the current
// connections: it never reaches the broker.
func (p *faultProxy) HoldClient() { p.each(func(l *proxyLink) { l.holdClient = true }) }

// Refuse makes the proxy close new connections at once (on) or forward
// them again (off).
func (p *faultProxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Accepts counts the connections the proxy accepted.
func (p *faultProxy) Accepts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

func (p *faultProxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	links := p.links
	p.links = nil
	p.mu.Unlock()
	for _, l := range links {
		l.client.Close()
		l.broker.Close()
	}
	p.wg.Wait()
}
