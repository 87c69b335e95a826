package tcp

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// socksServer is a minimal SOCKS5 proxy (RFC 1928) for tests: CONNECT only,
// no authentication or, if user is set, username/password (RFC 1929). It
// records the targets it was asked for.
type socksServer struct {
	ln         net.Listener
	user, pass string

	mu      sync.Mutex
	targets []string
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startSOCKS(t *testing.T, user, pass string) *socksServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &socksServer{ln: ln, user: user, pass: pass}
	s.wg.Go(s.serve)
	t.Cleanup(s.close)
	return s
}

func (s *socksServer) addr() string { return s.ln.Addr().String() }

func (s *socksServer) track(c net.Conn) {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

func (s *socksServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *socksServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.targets...)
}

func (s *socksServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.track(c)
		s.wg.Go(func() {
			defer c.Close()
			_ = s.handle(c)
		})
	}
}

func (s *socksServer) handle(c net.Conn) error {
	// Greeting: VER NMETHODS METHODS...
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return err
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return err
	}
	want := byte(0x00) // no authentication
	if s.user != "" {
		want = 0x02 // username/password
	}
	found := false
	for _, m := range methods {
		found = found || m == want
	}
	if hdr[0] != 5 || !found {
		_, _ = c.Write([]byte{5, 0xff})
		return errors.New("no acceptable method")
	}
	if _, err := c.Write([]byte{5, want}); err != nil {
		return err
	}
	if s.user != "" {
		// VER ULEN UNAME PLEN PASSWD
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		u := make([]byte, b[1])
		if _, err := io.ReadFull(c, u); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return err
		}
		p := make([]byte, b[0])
		if _, err := io.ReadFull(c, p); err != nil {
			return err
		}
		if string(u) != s.user || string(p) != s.pass {
			_, _ = c.Write([]byte{1, 1})
			return errors.New("bad credentials")
		}
		if _, err := c.Write([]byte{1, 0}); err != nil {
			return err
		}
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT
	req := make([]byte, 4)
	if _, err := io.ReadFull(c, req); err != nil {
		return err
	}
	if req[1] != 1 {
		_, _ = c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) // command not supported
		return errors.New("not CONNECT")
	}
	var host string
	switch req[3] {
	case 1:
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		host = net.IP(b).String()
	case 4:
		b := make([]byte, 16)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		host = net.IP(b).String()
	case 3:
		n := make([]byte, 1)
		if _, err := io.ReadFull(c, n); err != nil {
			return err
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		host = string(b)
	default:
		return errors.New("bad address type")
	}
	pb := make([]byte, 2)
	if _, err := io.ReadFull(c, pb); err != nil {
		return err
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb))))
	s.mu.Lock()
	s.targets = append(s.targets, target)
	s.mu.Unlock()

	up, err := net.Dial("tcp", target)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return err
	}
	s.track(up)
	defer up.Close()
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, up)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
	return nil
}
