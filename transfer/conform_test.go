package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/containerd"
	"github.com/ferrytool/ferry/store/docker"
	"github.com/ferrytool/ferry/store/podman"
	"github.com/ferrytool/ferry/store/pool"
)

// The store conformance suite (restic's backend tests, kopia's VerifyStorage): one list of
// checks run against every kind of store, on this machine and, where the kind can be on a
// host, over a real sshd, with real images, each checked by the store's own tools.

// conformImages are the bundles the suite loads: three images deriving from one base, and
// a delta of the second that leaves the base out.
type conformImages struct {
	dir               string
	app1, app2, app3  string // complete bundles of ferry-conform/app:N
	thin2             string // app:2 without the base layer
	ids               map[string]string
	bundles           map[string]*archive.Bundle // by file
	app1Size, app3Big int64
}

const conformRepo = "ferry-conform/app"

func makeConformImages(t *testing.T, e *sendEnv) *conformImages {
	t.Helper()
	src := e.src
	src.BusyboxImage(t, "ferry-conform/base:1", map[string]string{"/etc/base": "base\n"})
	ci := &conformImages{dir: t.TempDir(), ids: map[string]string{}, bundles: map[string]*archive.Bundle{}}
	for n, extra := range map[int]string{1: "", 2: randomFile(t, 2<<20), 3: randomFile(t, 1<<20)} {
		tag := fmt.Sprintf("%s:%d", conformRepo, n)
		files := map[string]string{"marker": fmt.Sprintf("app %d\n", n)}
		if extra != "" {
			files["data"] = extra
		}
		ci.ids[tag] = src.DeriveImage(t, tag, "ferry-conform/base:1", files)
	}
	save := func(name, image string, have *dedupe.Inventory) string {
		path := filepath.Join(ci.dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := Save(t.Context(), f, []string{image}, SaveOptions{Store: e.opts.Store, Have: have})
		if err != nil {
			t.Fatalf("saving %s: %v", image, err)
		}
		ci.bundles[path] = b
		return path
	}
	ci.app1 = save("app1.tar", conformRepo+":1", nil)
	ci.app2 = save("app2.tar", conformRepo+":2", nil)
	ci.app3 = save("app3.tar", conformRepo+":3", nil)
	base := save("base.tar", "ferry-conform/base:1", nil)
	ci.thin2 = save("thin2.tar", conformRepo+":2", dedupe.BundleInventory(ci.bundles[base]))
	if l := ci.bundles[ci.thin2].Images[0].Layers; !l[0].Missing || l[1].Missing {
		t.Fatalf("the delta of app:2 carries the wrong layers")
	}
	return ci
}

// A conformTarget is one store in one place, with the means to look at it without ferry.
type conformTarget struct {
	ref string // the store reference
	// loadRef, if set, names the store for each load (a pool takes each bundle under a
	// name of its own).
	loadRef func() string
	host    string // the SSH destination it is on; "" for this machine
	// open opens the store on this machine (for kinds whose local opening depends on the
	// environment, docker and podman); nil means store.Open(ref).
	open func(t *testing.T) store.Store
	// state describes what the store holds, by the store's own tools: equal before and
	// after a refused or aborted load.
	state func(t *testing.T) string
	// check proves that image tag, loaded, holds marker: it runs, or reads back with the
	// digests compared.
	check func(t *testing.T, tag, marker string)
}

// runConformance runs the suite against tg, whose store starts empty.
func runConformance(t *testing.T, e *sendEnv, ci *conformImages, tg conformTarget) {
	opts := e.opts.Options
	ctx := t.Context()
	load := func(r io.Reader) (*LoadResult, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		lo := LoadOptions{Options: opts, To: tg.ref, Host: tg.host}
		if tg.loadRef != nil {
			lo.To = tg.loadRef()
		}
		if tg.open != nil && tg.host == "" {
			lo.Store = tg.open(t)
		}
		return Load(ctx, r, lo)
	}
	loadFile := func(path string) (*LoadResult, error) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return load(f)
	}
	unchanged := func(t *testing.T, what, before string) {
		t.Helper()
		if after := tg.state(t); after != before {
			t.Errorf("%s changed the store:\nbefore:\n%s\nafter:\n%s", what, before, after)
		}
	}
	refuseThin := func(t *testing.T) {
		before := tg.state(t)
		_, err := loadFile(ci.thin2)
		if err == nil {
			t.Fatal("a bundle leaving out a layer the store lacks was loaded")
		}
		if !errors.Is(err, archive.ErrMissingBlob) {
			t.Errorf("refusal %v does not match archive.ErrMissingBlob", err)
		}
		t.Logf("refused: %v", err)
		unchanged(t, "a refused thin bundle", before)
	}
	abort := func(t *testing.T) {
		before := tg.state(t)
		data, err := os.ReadFile(ci.app2)
		if err != nil {
			t.Fatal(err)
		}
		cut := errors.New("the medium broke")
		_, err = load(io.MultiReader(bytes.NewReader(data[:len(data)/2]), &errReader{cut}))
		if !errors.Is(err, cut) {
			t.Errorf("a stream cut halfway: got %v, want the reader's error", err)
		}
		unchanged(t, "a stream cut halfway", before)
	}

	refuseThinSend := func(t *testing.T) {
		before := tg.state(t)
		so := e.opts
		so.Store, so.To = nil, tg.ref
		_, err := e.sendTo(t, []string{ci.thin2}, []string{tg.host}, so)
		if !errors.Is(err, archive.ErrMissingBlob) {
			t.Fatalf("sending a bundle that leaves out a layer the store lacks: got %v, want archive.ErrMissingBlob", err)
		}
		unchanged(t, "a refused thin bundle sent", before)
	}

	t.Run("thin bundle refused", refuseThin)
	if tg.host != "" {
		t.Run("thin bundle refused by send", refuseThinSend)
	}
	t.Run("aborted stream", abort)
	t.Run("round trip", func(t *testing.T) {
		res, err := loadFile(ci.app1)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Images) != 1 || !strings.HasSuffix(res.Images[0].Ref, conformRepo+":1") {
			t.Errorf("loaded %+v", res.Images)
		}
		tg.check(t, conformRepo+":1", "app 1\n")
	})
	var inv *dedupe.Inventory
	t.Run("inventory", func(t *testing.T) {
		var err error
		if tg.open != nil && tg.host == "" {
			inv, err = tg.open(t).Inventory(ctx)
		} else {
			inv, err = Inventory(ctx, tg.ref, tg.host, opts)
		}
		if err != nil {
			t.Fatal(err)
		}
		if inv.Complete {
			return // takes complete images only: nothing to say of layers
		}
		img := ci.bundles[ci.app1].Images[0]
		for i, l := range img.Layers {
			if !inv.Has(img, i) {
				t.Errorf("the inventory after the load lacks layer %d (%s)", i, l.DiffID)
			}
		}
	})
	if inv != nil && inv.Complete {
		t.Run("thin bundle refused after the base", refuseThin)
	} else {
		t.Run("delta onto the base", func(t *testing.T) {
			if _, err := loadFile(ci.thin2); err != nil {
				t.Fatal(err)
			}
			tg.check(t, conformRepo+":2", "app 2\n")
		})
	}
	t.Run("aborted stream after loads", abort)
	if tg.host == "" {
		return
	}
	t.Run("send twice", func(t *testing.T) {
		send := func() HostResult {
			so := e.opts
			so.Store, so.To = nil, tg.ref
			res, err := e.sendTo(t, []string{ci.app3}, []string{tg.host}, so)
			if err != nil {
				t.Fatal(err)
			}
			return res[0]
		}
		first := send()
		tg.check(t, conformRepo+":3", "app 3\n")
		if first.Sent < 1<<20 {
			t.Errorf("first send: %+v, want the new layer sent", first)
		}
		second := send()
		t.Logf("first send %d bytes (%d layers, %d skipped), second %d bytes (%d skipped)",
			first.Sent, first.Layers, first.Skipped, second.Sent, second.Skipped)
		if second.Sent > 64<<10 {
			t.Errorf("sending an image the store holds again: %+v, want almost nothing sent", second)
		}
		tg.check(t, conformRepo+":3", "app 3\n")
	})
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// TestConformance runs the suite against every store kind: docker 20.10, 26 classic and 26
// on the containerd image store, podman 5, containerd 1.7, an OCI layout, each on this
// machine and on a host over SSH; a registry and a pool on this machine.
func TestConformance(t *testing.T) {
	e := newSendEnv(t)
	ci := makeConformImages(t, e)

	for _, f := range testenv.DockerFlavors {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			d := testenv.StartDockerFlavor(t, f)
			c, err := docker.New(d.Host)
			if err != nil {
				t.Fatal(err)
			}
			tg := conformTarget{
				ref:  "docker",
				open: func(*testing.T) store.Store { return docker.NewStore(c) },
				state: func(t *testing.T) string {
					return sortedLines(d.Run(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
				},
				check: func(t *testing.T, tag, marker string) {
					if got := d.Cat(t, tag, "/marker"); got != marker {
						t.Errorf("%s: /marker holds %q, want %q", tag, got, marker)
					}
				},
			}
			t.Run("local", func(t *testing.T) { runConformance(t, e, ci, tg) })
			clearDocker(t, d)
			_, host := e.sshHost(t)
			tg.host = "ssh://" + host + strings.TrimPrefix(d.Host, "unix://")
			t.Run("ssh", func(t *testing.T) { runConformance(t, e, ci, tg) })
		})
	}

	t.Run("podman5", func(t *testing.T) {
		t.Parallel()
		pm := testenv.Podman5(t)
		wrapper := pm.Wrapper(t)
		name := func(tag string) string { return "localhost/" + tag } // podman names short names so
		tg := conformTarget{
			ref:  "podman",
			open: func(*testing.T) store.Store { return podman.Local(filepath.Join(wrapper, "podman")) },
			state: func(t *testing.T) string {
				return sortedLines(pm.Run(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
			},
			check: func(t *testing.T, tag, marker string) {
				got, err := pm.RunErr("run", "--rm", "--network", "none", "--pull=never", name(tag), "cat", "/marker")
				if err != nil || !strings.HasSuffix(got, marker) {
					t.Errorf("podman run %s: %v\n%s\npodman holds:\n%s", tag, err, got, pm.Run(t, "images", "-a"))
				}
			},
		}
		t.Run("local", func(t *testing.T) { runConformance(t, e, ci, tg) })
		pm.Run(t, "rmi", "-a", "-f")
		_, tg.host = e.sshHost(t, "PATH="+wrapper+":/usr/sbin:/usr/bin:/sbin:/bin")
		t.Run("ssh", func(t *testing.T) { runConformance(t, e, ci, tg) })
	})

	t.Run("containerd", func(t *testing.T) {
		t.Parallel()
		c := testenv.StartContainerd(t)
		runs := 0
		tg := conformTarget{
			ref: "containerd:k8s.io",
			open: func(t *testing.T) store.Store {
				st, err := containerd.New(t.Context(), func(ctx context.Context) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", c.Socket)
				}, "k8s.io")
				if err != nil {
					t.Fatal(err)
				}
				return st
			},
			state: func(t *testing.T) string { return sortedLines(c.Ctr(t, "-n", "k8s.io", "images", "ls")) },
			check: func(t *testing.T, tag, marker string) {
				runs++
				id := fmt.Sprintf("conform%d", runs)
				got, err := c.CtrErr("-n", "k8s.io", "run", "--rm", containerd.FullName(tag), id, "cat", "/marker")
				if err != nil || !strings.HasSuffix(got, marker) {
					t.Errorf("ctr run %s: %v\n%s", tag, err, got)
				}
			},
		}
		t.Run("local", func(t *testing.T) { runConformance(t, e, ci, tg) })
		for _, name := range strings.Fields(c.Ctr(t, "-n", "k8s.io", "images", "ls", "-q")) {
			c.Ctr(t, "-n", "k8s.io", "images", "rm", "--sync", name)
		}
		_, host := e.sshHost(t)
		tg.host = "ssh://" + host + c.Socket
		t.Run("ssh", func(t *testing.T) { runConformance(t, e, ci, tg) })
	})

	t.Run("oci", func(t *testing.T) {
		t.Parallel()
		skopeo := testenv.Require(t, "skopeo")
		for _, place := range []string{"local", "sftp"} {
			t.Run(place, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "layout")
				tg := conformTarget{
					ref:   "oci:" + dir,
					state: func(t *testing.T) string { return listTree(t, dir) },
					check: func(t *testing.T, tag, _ string) {
						checkConfig(t, skopeo, "oci:"+dir+":"+tag, ci.ids[tag])
					},
				}
				if place == "sftp" {
					_, tg.host = e.sshHost(t)
				}
				runConformance(t, e, ci, tg)
			})
		}
	})

	t.Run("registry", func(t *testing.T) {
		t.Parallel()
		skopeo := testenv.Require(t, "skopeo")
		reg := testenv.StartRegistry(t)
		runConformance(t, e, ci, conformTarget{
			ref:   "registry:" + reg.Addr + "/mirror",
			state: func(t *testing.T) string { return registryState(t, reg.Addr) },
			check: func(t *testing.T, tag, _ string) {
				checkConfig(t, skopeo, "docker://"+reg.Addr+"/mirror/"+tag, ci.ids[tag])
			},
		})
	})

	t.Run("pool", func(t *testing.T) {
		t.Parallel()
		skopeo := testenv.Require(t, "skopeo")
		dir := filepath.Join(t.TempDir(), "pool")
		if _, err := dedupe.InitPool(dir); err != nil {
			t.Fatal(err)
		}
		var bundle string // the name of the last bundle added
		n := 0
		runConformance(t, e, ci, conformTarget{
			ref: "pool:" + dir,
			loadRef: func() string {
				n++
				bundle = fmt.Sprintf("b%d", n)
				return "pool:" + dir + ":" + bundle
			},
			state: func(t *testing.T) string { return listTree(t, dir) },
			check: func(t *testing.T, tag, _ string) {
				checkConfig(t, skopeo, "oci:"+dir+":"+bundle+"/"+tag, ci.ids[tag])
				// The pool gives back the bundle that went in, byte for byte, and a delta
				// completed from the layers it holds.
				file := map[string]string{conformRepo + ":1": ci.app1, conformRepo + ":2": ci.app2}[tag]
				st, err := store.Open(t.Context(), "pool:"+dir, store.Env{})
				if err != nil {
					t.Fatal(err)
				}
				im, err := st.(*pool.Store).Open(t.Context(), []string{bundle}, store.ReadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer im.Close()
				h := sha256.New()
				if err := im.Write(t.Context(), h, im.Bundle, archive.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
				want, _ := os.ReadFile(file)
				if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
					t.Errorf("pool export of %s differs from %s", bundle, file)
				}
			},
		})
	})
}

// clearDocker removes every image of a daemon.
func clearDocker(t *testing.T, d *testenv.Docker) {
	t.Helper()
	if ids := strings.Fields(d.Run(t, "images", "-aq")); len(ids) > 0 {
		d.Run(t, append([]string{"rmi", "-f"}, ids...)...)
	}
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// listTree lists every file under dir with its size.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode(), map[bool]int64{true: 0, false: fi.Size()}[d.IsDir()]))
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return "(no directory)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// registryState lists the registry's repositories and their tags.
func registryState(t *testing.T, addr string) string {
	t.Helper()
	get := func(path string, v any) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var catalog struct{ Repositories []string }
	get("/v2/_catalog", &catalog)
	var out []string
	for _, repo := range catalog.Repositories {
		var tags struct{ Tags []string }
		get("/v2/"+repo+"/tags/list", &tags)
		slices.Sort(tags.Tags)
		out = append(out, repo+" "+strings.Join(tags.Tags, ","))
	}
	return strings.Join(out, "\n")
}

// checkConfig reads ref's manifest with skopeo and compares its config digest with id.
func checkConfig(t *testing.T, skopeo, ref, id string) {
	t.Helper()
	cmd := []string{"inspect", "--raw"}
	if strings.HasPrefix(ref, "docker://") {
		cmd = append(cmd, "--tls-verify=false")
	}
	out, err := runOut(skopeo, append(cmd, ref)...)
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	var m struct{ Config struct{ Digest string } }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("skopeo inspect %s: %v", ref, err)
	}
	if m.Config.Digest != id {
		t.Errorf("skopeo reads config %s from %s, want %s", m.Config.Digest, ref, id)
	}
}

func runOut(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
