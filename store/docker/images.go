package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"github.com/ferrytool/ferry/archive"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Info is the part of GET /info that ferry uses.
type Info struct {
	Name          string // the daemon host's name
	ServerVersion string // "20.10.24"
	Driver        string // storage driver: "overlay2"
	DriverStatus  [][2]string
	OSType        string
	Architecture  string

	// ContainerdSnapshotter is true when the daemon keeps images in
	// containerd's image store (dockerd 24+ with the containerd snapshotter,
	// the default for fresh installs of dockerd 29). Such a daemon does not
	// load a tar that omits layers it already has.
	ContainerdSnapshotter bool `json:"-"`
	// ContainerdCommit.ID is the revision of the containerd the daemon runs its containers
	// in (and, on the containerd image store, keeps its images in).
	ContainerdCommit struct{ ID string }
	// Containerd says where that containerd is: docker 27 and later (API 1.46), else nil.
	Containerd *ContainerdInfo
}

// ContainerdInfo is where the containerd a daemon uses listens, and the namespace it keeps
// its containers (and images) in.
type ContainerdInfo struct {
	Address    string
	Namespaces struct{ Containers string }
}

// ImageSummary is one entry of the daemon's image list.
type ImageSummary struct {
	ID          string // "sha256:…" digest of the image config
	RepoTags    []string
	RepoDigests []string
	Labels      map[string]string
}

// ImageInspect is the part of an image's inspect document that ferry uses.
type ImageInspect struct {
	ID          string
	RepoTags    []string
	RepoDigests []string
	RootFS      struct {
		Layers []string // diffIDs, base layer first
	}
	Os           string
	Architecture string
	Variant      string
	Size         int64 // bytes of all layers, uncompressed
	Created      v1.Time
	Config       v1.Config // the run settings
}

// key is the image's archive.ImageKey, from what the daemon says of it.
func (img ImageInspect) key(diffIDs []v1.Hash) v1.Hash {
	return archive.ImageKey(&v1.ConfigFile{OS: img.Os, Architecture: img.Architecture, Variant: img.Variant,
		Created: img.Created, RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}, Config: img.Config})
}

// Info returns what the daemon says about itself, in API 1.46 where the daemon serves it
// (Containerd is only given there).
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	if _, err := c.apiVersion(ctx); err != nil {
		return Info{}, fmt.Errorf("getting docker daemon info: %w", err)
	}
	c.mu.Lock()
	server, version := c.server, c.version
	c.mu.Unlock()
	var err error
	if versionLess(server, "1.46") || !versionLess(version, "1.46") {
		err = c.getJSON(ctx, "/info", &info)
	} else {
		var resp *http.Response
		if resp, err = c.send(ctx, http.MethodGet, "/v1.46/info", nil, nil, false); err == nil {
			defer resp.Body.Close()
			err = decodeJSON(resp.Body, &info)
		}
	}
	if err != nil {
		return Info{}, fmt.Errorf("getting docker daemon info: %w", err)
	}
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			info.ContainerdSnapshotter = true
		}
	}
	return info, nil
}

// MaxImages bounds the images a daemon may list: ferry inspects each one it takes stock of.
const MaxImages = 5000

// Images lists the daemon's tagged and untagged top-level images, each ID once. A list of
// over MaxImages is refused.
func (c *Client) Images(ctx context.Context) ([]ImageSummary, error) {
	var images []ImageSummary
	if err := c.getJSON(ctx, "/images/json", &images); err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	seen := map[string]bool{}
	images = slices.DeleteFunc(images, func(img ImageSummary) bool {
		dup := seen[img.ID]
		seen[img.ID] = true
		return dup
	})
	if len(images) > MaxImages {
		return nil, fmt.Errorf("listing images: the docker daemon lists %d images, more than the %d ferry takes stock of: remove those it does not need (docker image prune -a)",
			len(images), MaxImages)
	}
	return images, nil
}

// Inspect returns the metadata of the image name (a reference or an ID).
// An image the daemon does not have gives an error matching ErrNotFound.
func (c *Client) Inspect(ctx context.Context, name string) (ImageInspect, error) {
	if name == "" {
		return ImageInspect{}, errors.New("inspecting image: empty image name")
	}
	var img ImageInspect
	if err := c.getJSON(ctx, "/images/"+name+"/json", &img); err != nil {
		return ImageInspect{}, fmt.Errorf("inspecting image %s: %w", name, err)
	}
	return img, nil
}

// History returns what each step of the image name's history added, in bytes, oldest
// first (`docker history`): a step that made a layer, the bytes of its files; others, 0.
func (c *Client) History(ctx context.Context, name string) ([]int64, error) {
	var steps []struct{ Size int64 }
	if err := c.getJSON(ctx, "/images/"+name+"/history", &steps); err != nil {
		return nil, fmt.Errorf("reading the history of image %s: %w", name, err)
	}
	sizes := make([]int64, len(steps))
	for i, s := range steps { // newest first
		sizes[len(steps)-1-i] = s.Size
	}
	return sizes, nil
}

// Remove removes an image by ID (`docker rmi`), not the layers another image uses.
func (c *Client) Remove(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/images/"+id, nil)
	if err != nil {
		return fmt.Errorf("removing image %s: %w", id, err)
	}
	return resp.Body.Close()
}

// Save asks the daemon for one tar holding all of refs, as `docker save`
// writes it, and returns the response body for the caller to read and
// close. Cancelling ctx aborts the stream. An error the daemon meets after
// it has started sending is appended to the tar as a JSON message, so it
// surfaces as a malformed tar.
func (c *Client) Save(ctx context.Context, refs []string) (io.ReadCloser, error) {
	if len(refs) == 0 {
		return nil, errors.New("saving images: no images named")
	}
	resp, err := c.stream(ctx, http.MethodGet, "/images/get", url.Values{"names": refs}, nil)
	if err != nil {
		return nil, fmt.Errorf("saving images: %w", err)
	}
	return resp.Body, nil
}
