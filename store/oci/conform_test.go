package oci_test

import (
	"path/filepath"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/storetest"
)

// TestConformance runs the store conformance suite against an OCI layout on this machine
// and one on a host over SSH (SFTP); skopeo reads the images back.
func TestConformance(t *testing.T) {
	skopeo := testenv.Require(t, "skopeo")
	ssh := storetest.NewSSH(t)
	imgs := storetest.DockerImages(t)
	host := ssh.Host(t)
	for _, place := range []string{"local", "sftp"} {
		t.Run(place, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "layout")
			tg := storetest.Target{
				Ref:     "oci:" + dir,
				Options: ssh.Options,
				State:   func(t *testing.T) string { return storetest.ListTree(t, dir) },
				Check: func(t *testing.T, tag, _ string) {
					storetest.CheckConfig(t, skopeo, "oci:"+dir+":"+tag, imgs.IDs[tag])
				},
			}
			if place == "sftp" {
				tg.Host = host
			}
			storetest.Run(t, imgs, tg)
		})
	}
}
