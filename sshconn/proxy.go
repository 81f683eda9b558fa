package sshconn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// A proxyConn is the standard input and output of a ProxyCommand, run as ssh runs it:
// `exec COMMAND` through the user's shell, its standard error shown. Closing the
// connection kills the command.
type proxyConn struct {
	command string
	addr    proxyAddr
	cmd     *exec.Cmd
	in      *os.File // the command's standard input
	out     *os.File // its standard output
	stderr  *tailBuffer
	done    chan struct{} // closed when the command has exited, with exit set
	exit    error
	close   sync.Once
}

// proxyGrace is how long a ProxyCommand whose connection failed is given to end by itself,
// so that its exit status and message explain the failure.
const proxyGrace = 2 * time.Second

// startProxy starts command (tokens expanded) for a connection to addr; what it writes to
// standard error goes to stderr (nil: nowhere) and is kept for the error if it fails.
func startProxy(command, addr string, stderr io.Writer) (*proxyConn, error) {
	p := &proxyConn{command: command, addr: proxyAddr(addr), stderr: &tailBuffer{max: maxStderr}, done: make(chan struct{})}
	p.cmd = exec.Command(shell(), "-c", "exec "+command)
	p.cmd.Stderr = p.stderr
	if stderr != nil {
		p.cmd.Stderr = io.MultiWriter(stderr, p.stderr)
	}
	p.cmd.WaitDelay = proxyGrace // a child left holding its stderr does not hold Close
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p.cmd.Stdin, p.cmd.Stdout, p.in, p.out = inR, outW, inW, outR
	err = p.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("%w: starting %s: %v", ErrProxyCommand, command, err)
	}
	go func() { p.exit = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proxyConn) Read(b []byte) (int, error)  { return p.out.Read(b) }
func (p *proxyConn) Write(b []byte) (int, error) { return p.in.Write(b) }

// Close ends the command's input and kills it.
func (p *proxyConn) Close() error {
	p.close.Do(func() {
		p.in.Close()
		p.out.Close()
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return nil
}

// failure gives the command a moment to end by itself once the connection over it
// failed, and says how it ended; nil if it is still running.
func (p *proxyConn) failure() error {
	p.in.Close()
	select {
	case <-p.done:
	case <-time.After(proxyGrace):
		return nil
	}
	how := "exited 0"
	if p.exit != nil {
		how = p.exit.Error()
	}
	err := fmt.Errorf("%w: `%s` (%s) before the connection was made", ErrProxyCommand, p.command, how)
	if s := strings.TrimSpace(p.stderr.String()); s != "" {
		err = fmt.Errorf("%w: %s", err, s)
	}
	return err
}

func (p *proxyConn) LocalAddr() net.Addr  { return p.addr }
func (p *proxyConn) RemoteAddr() net.Addr { return p.addr }
func (p *proxyConn) SetDeadline(t time.Time) error {
	return errors.Join(p.in.SetDeadline(t), p.out.SetDeadline(t))
}
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return p.out.SetReadDeadline(t) }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return p.in.SetWriteDeadline(t) }

// A proxyAddr is the host:port a ProxyCommand leads to.
type proxyAddr string

func (proxyAddr) Network() string  { return "proxy" }
func (a proxyAddr) String() string { return string(a) }
