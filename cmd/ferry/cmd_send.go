package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/atomicfile"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer"
)

type sendOptions struct {
	hosts    []string
	jobs     int
	failed   string // --hosts-failed FILE
	stall    time.Duration
	to       string
	from     string
	all      bool
	compress string
	level    int
	read     readFlags
	insecure bool
	ssh      sshFlags
	progress progressFlags
}

func newSendCmd() *cobra.Command {
	var o sendOptions
	cmd := &cobra.Command{
		Use:   "send (IMAGE|BUNDLE|pool:DIR[:NAME]|oci:DIR[:REF])... -H [user@]host[:port] [-H HOST]... [--to docker|podman|containerd[:NS]|oci:DIR]",
		Short: "Stream images over SSH into the stores of other hosts, only the layers they lack",
		Long: `Send images straight into the store of one or more hosts over SSH (their docker daemon,
unless --to names another): nothing but sshd and the store is needed there. Each host is
asked which layers it already has and gets only the others, compressed on the wire
(--compress: zstd to docker 23 and later, gzip to 20.10). The images are read once, whatever
the number of hosts, and sent to the hosts, 16 at once (--jobs); a host that fails does not
stop the others.

--to names the store on the hosts, the same for all:
  docker    the docker daemon, through its socket (default). On the containerd image
            store, through the daemon's containerd where ferry reaches it (as for
            containerd:moby below), else complete images, and a line saying why
  podman    the one command "podman load", the images on its stdin, complete and
            uncompressed (podman 4 loads neither thin nor gzip-compressed bundles)
  containerd[:NAMESPACE]
            containerd (namespace k8s.io unless $CONTAINERD_NAMESPACE or NAMESPACE says
            otherwise), through its socket (/run/containerd/containerd.sock, or the path in
            -H ssh://HOST/PATH: k3s and rke2 use /run/k3s/containerd/containerd.sock). Only
            the blobs its content store lacks (or its snapshotter holds unpacked) are sent,
            each through a containerd ingest: a blob cut short is resumed where it stopped.
            Uncompressed layers (docker's) travel gzip-compressed, the manifests rewritten
            to name the compressed blobs. The images are unpacked ($CONTAINERD_SNAPSHOTTER, overlayfs by default) and
            only then named.
  oci:DIR   an OCI image layout directory DIR on the hosts, written over SFTP (sshd's sftp
            subsystem; a relative DIR starts at the remote user's home). Only the blobs it
            lacks are sent, each to a temporary name and linked into place once its digest checks
            out; index.json is replaced last. After a cut connection the blobs written whole
            stay, and sending again sends only the rest.

Hosts are named with -H, one flag per host: [user@]host[:port], a Host alias of the ssh
config, or ssh://[user@]host[:port]/path/to/docker.sock for a daemon whose socket is not
/var/run/docker.sock. SSH works as ssh does: ~/.ssh/config (HostName, Port, User,
IdentityFile, ProxyJump, ConnectTimeout, UserKnownHostsFile), ssh-agent, key files (a
passphrase is asked on a terminal), host keys checked against ~/.ssh/known_hosts. A host
missing there is refused unless --accept-new-host-key; a host whose key changed is always
refused.

Fleets: -H @FILE reads hosts from FILE, one a line (blank lines and lines starting with #
are skipped), and mixes with -H HOST; a host named twice is sent to once. --jobs N sends to
N hosts at once (default 16); the images are still read once, and hosts that wait their turn
take them from the spool. When some hosts fail, ferry lists them and exits 4;
--hosts-failed FILE writes them, one a line, so that -H @FILE sends to them alone. A host
whose store makes no progress for --stall-timeout, or lies (a load it reports and then does
not list), fails alone.

Images come from the local docker daemon ($DOCKER_HOST), from a registry (--from registry),
from OCI layout directories (oci:DIR[:REF]), pools (pool:DIR:NAME), bundle files (what was
carried into an air gap goes straight to every host; no local daemon needed), or from the
docker daemon of another host (--from HOST): host to host through this machine. --all sends
every tagged image of the source daemon.

After a lost connection the same command sends again, and each host gets only what it still
lacks. A docker daemon on the classic image store is sent its layers in steps, untagged images
labelled org.ferrytool.step that it keeps: a cut loses the step in flight only (docker image
prune removes steps a cut left). containerd, and docker through its containerd, keep whole
blobs and resume a cut one where it stopped; an OCI layout keeps the blobs written whole.
podman, and docker on the containerd image store reached through its API, load nothing from a
stream cut short: the host is as it was. The summary on stdout says what each host got.

` + storeHelp(),
		Example: `  ferry send app:1 app:2 -H web1 -H deploy@10.0.0.7:2222
  ferry send app:1 -H @nodes.txt --jobs 8 --hosts-failed retry.txt
  ferry send --from root@old --all -H root@new
  ferry send app:1 -H ssh://me@web1/run/user/1000/docker.sock
  ferry send app:1 -H web1 --to podman
  ferry send app:1 app:2 -H backup1 --to oci:/srv/images
  ferry send apps.tar.gz -H web1 -H web2
  ferry send pool:/backup/images:nightly-2026-11-22 -H web1
  ferry send app.tar -H root@node1 -H root@node2 --to containerd:k8s.io`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.hosts, "host", "H", nil, "send to `HOST`: [user@]host[:port] or ssh://[user@]host[:port]/SOCKET (repeat for more hosts), or @FILE: the hosts FILE lists, one a line")
	f.IntVar(&o.jobs, "jobs", transfer.DefaultJobs, "send to `N` hosts at once")
	f.DurationVar(&o.stall, "stall-timeout", 2*time.Minute, "give up on a host when an exchange with its store (docker, containerd, sftp) makes no progress for `DURATION` (a load that reports progress goes on)")
	f.StringVar(&o.failed, "hosts-failed", "", "write the hosts that did not get the images to `FILE`, one a line (none when all did), for -H @FILE")
	f.StringVar(&o.to, "to", store.DefaultRef(), "the `STORE` on the hosts: docker, podman, containerd[:NAMESPACE] or oci:DIR (a layout directory there, over SFTP)")
	f.StringVar(&o.from, "from", store.DefaultRef(), "the `STORE` IMAGE references are read from (docker, registry, registry:HOST[/PREFIX], containerd[:NAMESPACE]), or a HOST whose docker daemon is read over SSH")
	f.BoolVar(&o.all, "all", false, "send every tagged image of the source docker daemon")
	f.StringVar(&o.compress, "compress", "auto", "compression on the wire: auto (zstd to docker 23 and later; else gzip while it is faster than not), zstd, gzip or none")
	f.IntVar(&o.level, "level", 0, "compression `level`: gzip 1 fastest … 9 smallest; zstd 1 fastest … 4 smallest (higher means 4); with auto, of gzip only (default: what each host's link calls for, gzip 1 to 6, zstd 1 to 3)")
	o.read.register(f)
	f.BoolVar(&o.insecure, "insecure", false, "allow plain http to any registry")
	o.ssh.register(f)
	o.progress.register(f)
	return cmd
}

func (o *sendOptions) run(cmd *cobra.Command, images []string) error {
	hosts, err := hostList(o.hosts)
	if err != nil {
		return err
	}
	if len(images) == 0 && !o.all {
		return usagef("name the images to send, or pass --all")
	}
	if o.jobs < 1 {
		return usagef("--jobs %d: send to at least one host at a time", o.jobs)
	}
	if o.stall <= 0 {
		return usagef("--stall-timeout %s: give a positive duration (2m, 30s)", o.stall)
	}
	c, err := o.compression(cmd.Flags().Changed("level"))
	if err != nil {
		return err
	}
	read, err := o.read.options()
	if err != nil {
		return err
	}
	show := newSendProgress(cmd, &o.progress, hosts)
	read.Progress = show.reading
	opts := transfer.SendOptions{
		Options:  o.ssh.options(o.insecure, show.askPassphrase),
		Read:     read,
		Compress: c,
		Jobs:     o.jobs,
		All:      o.all,
		To:       o.to,
		Progress: show.sending,
	}
	opts.From, opts.FromHost = parseFrom(o.from)
	opts.Waiting = o.progress.waiting(cmd.ErrOrStderr())
	opts.Note = o.progress.note(cmd.ErrOrStderr())
	opts.Read.Note = opts.Note
	opts.Stall = o.stall
	results, err := transfer.Send(cmd.Context(), images, hosts, opts)
	show.finish(results, err)
	if results == nil {
		return err
	}
	printSendSummary(cmd.OutOrStdout(), results)
	if o.failed != "" {
		if werr := writeFailedHosts(o.failed, results); werr != nil {
			return errors.Join(err, werr)
		}
		if err != nil {
			opts.Note(fmt.Sprintf("the hosts that failed are in %s: send to them alone with -H @%s", o.failed, o.failed))
		}
	}
	return err
}

// hostList reads the hosts -H names: a host each, or @FILE, the hosts FILE lists one a line
// (blank lines and lines starting with # skipped). A host named twice is sent to once.
func hostList(flags []string) ([]string, error) {
	var hosts []string
	add := func(h string) {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	for _, f := range flags {
		file, ok := strings.CutPrefix(f, "@")
		if !ok {
			add(f)
			continue
		}
		listed, err := readHostFile(file)
		if err != nil {
			return nil, err
		}
		for _, h := range listed {
			add(h)
		}
	}
	if len(hosts) == 0 {
		return nil, usagef("name the hosts to send to: -H [user@]host[:port], once per host, or -H @FILE")
	}
	return hosts, nil
}

// readHostFile reads a file of hosts, one a line.
func readHostFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("-H @%s: %w", path, err)
	}
	defer f.Close()
	var hosts []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.ContainsFunc(line, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return nil, usagef("%s:%d: %s: one host a line, printable, without spaces", path, n, archive.Quote(line))
		case strings.HasPrefix(line, "@"):
			return nil, usagef("%s:%d: %s: a file of hosts names hosts, not other files", path, n, archive.Quote(line))
		}
		hosts = append(hosts, line)
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("-H @%s: %w", path, err)
	}
	return hosts, nil
}

// writeFailedHosts writes the hosts of results that failed to path, one a line, atomically:
// a file -H @path reads.
func writeFailedHosts(path string, results []transfer.HostResult) error {
	var b strings.Builder
	b.WriteString("# hosts ferry send did not reach; send to them again with -H @" + path + "\n")
	for _, r := range results {
		if r.Err != nil {
			b.WriteString(r.Host + "\n")
		}
	}
	if err := atomicfile.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--hosts-failed: %w", err)
	}
	return nil
}

// compression reads --compress and --level (fixed is whether --level was given): auto
// adapts the codec and the level to each host, a codec alone its level to each host's link.
func (o *sendOptions) compression(fixed bool) (compress.Compression, error) {
	c := compress.Compression{Mode: compress.Follow}
	name := o.compress
	if name == "auto" {
		c.Mode, name = compress.Auto, "gzip"
	}
	level := compress.DefaultLevel
	if fixed {
		level = o.level
	}
	write, err := writeOptions(name, level, "")
	if err != nil {
		return c, err
	}
	c.Codec = write.Codec
	if fixed {
		c.Level = level
		if c.Mode == compress.Follow {
			c.Mode = compress.Fixed
		}
	}
	return c, nil
}

// printSendSummary prints a table of what each host got.
func printSendSummary(w io.Writer, results []transfer.HostResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSENT\tFULL\tLAYERS SENT\tRESULT")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\t\t\tFAILED\n", r.Host, humanBytes(r.Sent))
			continue
		}
		// Layers sent are those whose bytes moved; those the store held apart.
		result := "loaded " + strings.Join(r.Loaded, ", ")
		if r.Held > 0 {
			result += fmt.Sprintf("; %d layers held already, unpacked", r.Held)
		}
		if r.Complete != "" {
			result += " (" + r.Complete + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d of %d\t%s\n", r.Host, humanBytes(r.Sent), humanBytes(r.Full),
			r.Layers-r.Skipped-r.Held, r.Layers, result)
	}
	tw.Flush()
}
