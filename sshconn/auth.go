package sshconn

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keys are what a connection offers to authenticate: certificates, ssh-agent's keys, then
// the identity files'. One publickey method carries them all, since x/crypto tries each
// method once.
type keys struct {
	signers []ssh.Signer
	offered []string // for messages: "2 keys of ssh-agent", file names
	agent   net.Conn // open while authenticating; nil without an agent
}

func loadKeys(h host, passphrase func(string) ([]byte, error)) (*keys, error) {
	k := &keys{}
	var agentKeys, files []ssh.Signer
	if sock := h.agent; sock != "" {
		// An agent that does not answer is skipped, as ssh does.
		if conn, err := net.Dial("unix", sock); err == nil {
			signers, err := agent.NewClient(conn).Signers()
			if err != nil {
				conn.Close()
			} else {
				k.agent, agentKeys = conn, signers
			}
		}
	}
	certFiles := slices.Clone(h.certificates)
	for _, id := range h.identities {
		signer, err := loadKeyFile(id.path, passphrase)
		if errors.Is(err, fs.ErrNotExist) && !id.explicit {
			continue
		}
		if err != nil {
			k.close()
			return nil, err
		}
		files = append(files, signer)
		k.offered = append(k.offered, id.path)
		certFiles = append(certFiles, id.path+"-cert.pub") // as ssh, the certificate beside a key
	}
	certs, err := loadCertificates(certFiles)
	if err != nil {
		k.close()
		return nil, err
	}
	if h.identitiesOnly { // the agent's keys only where they are the files' or the certificates'
		agentKeys = slices.DeleteFunc(agentKeys, func(a ssh.Signer) bool {
			return !slices.ContainsFunc(files, func(f ssh.Signer) bool { return keyEqual(plain(a.PublicKey()), f.PublicKey()) }) &&
				!slices.ContainsFunc(certs, func(c *ssh.Certificate) bool { return keyEqual(plain(a.PublicKey()), c.Key) })
		})
	}
	if len(agentKeys) > 0 {
		k.offered = append([]string{fmt.Sprintf("%d keys of ssh-agent", len(agentKeys))}, k.offered...)
	}
	held := append(slices.Clone(agentKeys), files...)
	for _, c := range certs {
		i := slices.IndexFunc(held, func(s ssh.Signer) bool { return keyEqual(s.PublicKey(), c.Key) })
		if i < 0 {
			continue // a certificate of a key ferry does not hold
		}
		signer, err := ssh.NewCertSigner(c, held[i])
		if err != nil {
			k.close()
			return nil, fmt.Errorf("using the certificate of %s: %w", describeKey(c.Key), err)
		}
		k.signers = append(k.signers, signer)
		k.offered = append(k.offered, "a certificate of "+describeKey(c.Key))
	}
	k.signers = append(append(k.signers, agentKeys...), files...)
	return k, nil
}

// loadCertificates reads the certificate files that exist.
func loadCertificates(paths []string) ([]*ssh.Certificate, error) {
	var certs []*ssh.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading certificate: %w", err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		cert, ok := pub.(*ssh.Certificate)
		if err != nil || !ok || cert.CertType != ssh.UserCert {
			return nil, fmt.Errorf("certificate file %s holds no user certificate (ssh-keygen -s makes one)", p)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// plain is the key of a certificate, else key itself.
func plain(key ssh.PublicKey) ssh.PublicKey {
	if c, ok := key.(*ssh.Certificate); ok {
		return c.Key
	}
	return key
}

func (k *keys) method() ssh.AuthMethod {
	return ssh.PublicKeys(k.signers...)
}

func (k *keys) close() {
	if k.agent != nil {
		k.agent.Close()
	}
}

func (k *keys) String() string { return strings.Join(k.offered, ", ") }

// loadKeyFile reads a private key file. An encrypted one becomes a lockedKey when its
// public key is known (from the file itself or from path.pub), so that its passphrase is
// asked only if the server would accept it.
func loadKeyFile(path string, passphrase func(string) ([]byte, error)) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading identity file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		if err != nil {
			return nil, fmt.Errorf("reading identity file %s: %w", path, err)
		}
		return signer, nil
	}
	k := &lockedKey{path: path, pem: pem, pub: missing.PublicKey, ask: passphrase}
	if k.pub == nil {
		if b, err := os.ReadFile(path + ".pub"); err == nil {
			k.pub, _, _, _, _ = ssh.ParseAuthorizedKey(b)
		}
	}
	if k.pub == nil {
		return k.unlock()
	}
	return k, nil
}

// A lockedKey is an encrypted private key, decrypted when first used to sign.
type lockedKey struct {
	path string
	pem  []byte
	pub  ssh.PublicKey
	ask  func(string) ([]byte, error)

	once   sync.Once
	signer ssh.AlgorithmSigner
	err    error
}

func (k *lockedKey) PublicKey() ssh.PublicKey { return k.pub }

func (k *lockedKey) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := k.unlock()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

func (k *lockedKey) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := k.unlock()
	if err != nil {
		return nil, err
	}
	return s.SignWithAlgorithm(rand, data, algorithm)
}

func (k *lockedKey) unlock() (ssh.AlgorithmSigner, error) {
	k.once.Do(func() {
		if k.ask == nil {
			k.err = fmt.Errorf("identity file %s is encrypted and there is no terminal to ask for its passphrase: "+
				"add it to ssh-agent (ssh-add %s) first", k.path, Quote(k.path))
			return
		}
		pass, err := k.ask(k.path)
		if err != nil {
			k.err = fmt.Errorf("asking for the passphrase of %s: %w", k.path, err)
			return
		}
		signer, err := ssh.ParsePrivateKeyWithPassphrase(k.pem, pass)
		if err != nil {
			k.err = fmt.Errorf("decrypting identity file %s: %w", k.path, err)
			return
		}
		var ok bool
		if k.signer, ok = signer.(ssh.AlgorithmSigner); !ok {
			k.err = fmt.Errorf("identity file %s: unsupported key type %s", k.path, signer.PublicKey().Type())
		}
	})
	return k.signer, k.err
}
