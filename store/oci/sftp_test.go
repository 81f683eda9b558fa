package oci

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/sshconn"
)

// dialSFTP starts a real sshd and returns its file system over SFTP.
func dialSFTP(t *testing.T) (*sftpFS, *testenv.SSHD) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("SSH_AUTH_SOCK", "")
	pub, key := testenv.NewKey(t, dir, "id", "")
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, []byte(sshd.KnownHostsLine()+"\n"), 0o600)
	d, err := sshconn.ParseDestination("root@" + sshd.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshconn.Dial(context.Background(), d, sshconn.Config{ConfigFile: "none", KnownHosts: known, Identities: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	return newSFTPFS(s, 0), sshd
}

func TestSFTPLink(t *testing.T) {
	fsys, _ := dialSFTP(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("x"), 0o644)
	if err := fsys.Link(a, b); err != nil {
		t.Fatalf("link: %v", err)
	}
	if err := fsys.Link(a, b); err == nil {
		t.Fatal("linking onto an existing name succeeded")
	}
}
