package sshconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// settings are a host's resolved ssh settings as `ssh -G` prints them: lowercased keyword →
// values, one for most keywords, every one in order for those in multi.
type settings map[string][]string

// multi are the keywords of which every value counts; of the others the first wins.
var multi = words("identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward", "sendenv")

// get is the value of keyword, "" if it has none.
func (s settings) get(keyword string) string {
	if v := s[keyword]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// maxInclude bounds nested Include directives, as OpenSSH does.
const maxInclude = 16

// A parser reads ssh config files as OpenSSH's client does. ferry uses it where no ssh
// client is installed to ask (ssh -G): Host and Match blocks (host, originalhost, user,
// localuser, tagged, canonical, final, all, exec, negated with !), Include, first value
// wins. A Match criterion it does not know is an error only when the rest of its block
// applies to the host.
type parser struct {
	ctx    context.Context
	home   string
	orig   string // the host as the user named it: %n, Match originalhost
	host   string // what Host lines match: orig, then the resolved HostName in the final pass
	final  bool   // the final pass, for Match final and canonical
	again  bool   // a Match final asks for a final pass
	s      settings
	ignore string // IgnoreUnknown's patterns
	stderr io.Writer
}

// parseConfig resolves the ssh config for d as `ssh -G [-F cfg.ConfigFile] [-o OPTION]...
// [-l USER] [-p PORT] HOST` would.
func parseConfig(ctx context.Context, cfg Config, d Destination, options []string) (settings, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("finding ~/.ssh: %w", err)
	}
	p := &parser{ctx: ctx, home: home, orig: d.Host, host: d.Host, s: settings{}, stderr: cfg.Stderr}
	if d.User != "" {
		p.s["user"] = []string{d.User}
	}
	if d.Port != 0 {
		p.s["port"] = []string{strconv.Itoa(d.Port)}
	}
	for _, o := range options {
		if err := p.option(o); err != nil {
			return nil, err
		}
	}
	type file struct {
		path string
		user bool // relative Includes start in ~/.ssh, else in /etc/ssh
	}
	files := []file{{filepath.Join(home, ".ssh", "config"), true}, {"/etc/ssh/ssh_config", false}}
	switch cfg.ConfigFile {
	case "none":
		files = nil
	case "":
	default:
		if _, err := os.Stat(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("reading ssh config: %w", err)
		}
		files = []file{{cfg.ConfigFile, true}}
	}
	for pass := 0; pass == 0 || pass == 1 && p.again; pass++ {
		if pass == 1 {
			p.final, p.host = true, p.hostname()
		}
		for _, f := range files {
			if err := p.read(f.path, f.user, 0); err != nil {
				return nil, err
			}
		}
	}
	return p.s, p.defaults()
}

// read reads one config file; a missing one is no error, as for ssh.
func (p *parser) read(path string, user bool, depth int) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ssh config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	active := true
	for n := 1; sc.Scan(); n++ {
		if err := p.line(sc.Text(), fmt.Sprintf("%s line %d", path, n), &active, user, depth); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading ssh config %s: %w", path, err)
	}
	return nil
}

// line applies one line of a config file at where; active says whether the enclosing
// Host or Match block applies, and Host and Match lines change it.
func (p *parser) line(text, where string, active *bool, user bool, depth int) error {
	keyword, args, rest, err := splitLine(text)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", where, err)
	case keyword == "host":
		*active = matchAny(p.host, args)
		return nil
	case keyword == "match":
		*active, err = p.match(args, where)
		return err
	case keyword == "" || !*active:
		return nil
	case keyword == "include" && len(args) > 0:
		return p.include(args, where, user, depth)
	}
	return p.set(keyword, args, rest, where)
}

// option applies a -o option: a config line without Host, Match or Include.
func (p *parser) option(o string) error {
	where := fmt.Sprintf("-o %q", o)
	keyword, args, rest, err := splitLine(o)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", where, err)
	case keyword == "" || keyword == "host" || keyword == "match" || keyword == "include":
		return fmt.Errorf("%s: not an ssh option (-o Keyword=Value)", where)
	}
	return p.set(keyword, args, rest, where)
}

// set records a keyword's value unless an earlier one holds.
func (p *parser) set(keyword string, args []string, rest, where string) error {
	switch {
	case len(args) == 0:
		return fmt.Errorf("%s: %s needs a value", where, keyword)
	case keyword == "ignoreunknown":
		if p.ignore == "" {
			p.ignore = args[0]
		}
		return nil
	case !known(keyword):
		if matchList(keyword, p.ignore) {
			return nil
		}
		return fmt.Errorf("%s: unknown ssh config keyword %q (ferry reads the ssh config itself because no ssh "+
			"client is installed: install one, or name the keyword in IgnoreUnknown)", where, keyword)
	}
	value := strings.Join(args, " ")
	switch keyword {
	case "proxycommand", "proxyjump":
		if p.s["proxycommand"] != nil || p.s["proxyjump"] != nil { // whichever comes first wins
			return nil
		}
		if keyword == "proxycommand" {
			value = rest
		}
	}
	if multi[keyword] || p.s[keyword] == nil {
		p.s[keyword] = append(p.s[keyword], value)
	}
	return nil
}

// include reads the files Include names: globs, relative to ~/.ssh (or /etc/ssh for the
// system's config).
func (p *parser) include(args []string, where string, user bool, depth int) error {
	if depth >= maxInclude {
		return fmt.Errorf("%s: Include nested more than %d deep", where, maxInclude)
	}
	for _, arg := range args {
		pattern, err := p.tokens().expand(arg)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if !filepath.IsAbs(pattern) {
			dir := "/etc/ssh"
			if user {
				dir = filepath.Join(p.home, ".ssh")
			}
			pattern = filepath.Join(dir, pattern)
		}
		paths, err := filepath.Glob(pattern)
		if err != nil {
			return fmt.Errorf("%s: Include %s: %w", where, arg, err)
		}
		for _, path := range paths {
			if err := p.read(path, user, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// match evaluates a Match line's criteria.
func (p *parser) match(args []string, where string) (bool, error) {
	if len(args) == 0 {
		return false, fmt.Errorf("%s: Match needs criteria", where)
	}
	matched, unknown := true, ""
	for i := 0; i < len(args); i++ {
		criterion := strings.ToLower(args[i])
		negate := strings.HasPrefix(criterion, "!")
		criterion = strings.TrimPrefix(criterion, "!")
		var ok bool
		switch criterion {
		case "all":
			ok = true
		case "final", "canonical":
			p.again = p.again || criterion == "final"
			ok = p.final
		default:
			if i+1 == len(args) {
				return false, fmt.Errorf("%s: Match %s needs an argument", where, criterion)
			}
			i++
			switch arg := args[i]; criterion {
			case "host":
				ok = matchList(p.hostname(), arg)
			case "originalhost":
				ok = matchList(p.orig, arg)
			case "user":
				ok = matchList(p.tokens().user, arg)
			case "localuser":
				ok = matchList(localUser(), arg)
			case "tagged":
				ok = matchList(p.s.get("tag"), arg)
			case "exec":
				if !matched || unknown != "" { // OpenSSH runs it only when the criteria before it match
					continue
				}
				var err error
				if ok, err = p.exec(arg, where); err != nil {
					return false, err
				}
			default:
				unknown = criterion
				continue
			}
		}
		if ok == negate {
			matched = false
		}
	}
	if matched && unknown != "" {
		return false, fmt.Errorf("%s: Match %s applies to %s and ferry cannot evaluate it without an ssh client: "+
			"install one (ferry then asks `ssh -G`)", where, unknown, p.orig)
	}
	return matched, nil
}

// exec runs a Match exec command through the user's shell, as ssh does: it matches when
// the command exits 0.
func (p *parser) exec(command, where string) (bool, error) {
	command, err := p.tokens().expand(command)
	if err != nil {
		return false, fmt.Errorf("%s: Match exec: %w", where, err)
	}
	cmd := exec.CommandContext(p.ctx, shell(), "-c", command)
	cmd.Stderr = p.stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return false, fmt.Errorf("%s: Match exec %s: %w", where, command, err)
	}
	return err == nil, nil
}

// hostname is the HostName set so far, tokens expanded, else the host as named.
func (p *parser) hostname() string {
	if h := p.s.get("hostname"); h != "" {
		return strings.NewReplacer("%%", "%", "%h", p.orig).Replace(h)
	}
	return p.orig
}

// tokens are the values of %-tokens for what has been read so far.
func (p *parser) tokens() tokens {
	t := tokens{home: p.home, orig: p.orig, host: p.hostname(), port: p.s.get("port"), user: p.s.get("user"), alias: p.s.get("hostkeyalias")}
	if t.port == "" {
		t.port = "22"
	}
	if t.user == "" {
		t.user = localUser()
	}
	return t
}

// defaults completes the settings as `ssh -G` prints them, with the file names that ssh
// expands expanded.
func (p *parser) defaults() error {
	t := p.tokens()
	p.s["hostname"] = []string{t.host}
	p.s["port"] = []string{t.port}
	p.s["user"] = []string{t.user}
	if p.s["identityfile"] == nil {
		for _, k := range []string{"rsa", "ecdsa", "ecdsa_sk", "ed25519", "ed25519_sk", "xmss", "dsa"} {
			p.s["identityfile"] = append(p.s["identityfile"], "~/.ssh/id_"+k)
		}
	}
	for k, v := range map[string]string{
		"userknownhostsfile":    "~/.ssh/known_hosts ~/.ssh/known_hosts2",
		"globalknownhostsfile":  "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2",
		"stricthostkeychecking": "ask",
		"serveralivecountmax":   "3",
		"serveraliveinterval":   "0",
	} {
		if p.s[k] == nil {
			p.s[k] = []string{v}
		}
	}
	for _, k := range []string{"userknownhostsfile", "identityagent"} {
		if v := p.s.get(k); v != "" && v != "none" && v != "SSH_AUTH_SOCK" && !strings.HasPrefix(v, "$") {
			var files []string
			for _, f := range strings.Fields(v) {
				f, err := t.expand(f)
				if err != nil {
					return fmt.Errorf("ssh config %s: %w", k, err)
				}
				files = append(files, f)
			}
			p.s[k] = []string{strings.Join(files, " ")}
		}
	}
	return nil
}

// splitLine splits a config line into its lowercased keyword, its arguments (quotes
// removed) and the raw text after the keyword; keyword is "" for a blank line or a comment.
func splitLine(line string) (keyword string, args []string, rest string, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil, "", nil
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), nil, "", nil
	}
	keyword, rest = strings.ToLower(line[:i]), strings.TrimLeft(line[i:], " \t")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
	args, err = splitArgs(rest)
	return keyword, args, rest, err
}

// splitArgs splits s at blanks, as OpenSSH's argv_split does: "…" and '…' quote, a
// backslash escapes the next character, and # starting an argument starts a comment.
func splitArgs(s string) ([]string, error) {
	var args []string
	var arg strings.Builder
	started, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == ' ' || c == '\t'):
			if started {
				args = append(args, arg.String())
				arg.Reset()
				started = false
			}
		case quote == 0 && c == '#' && !started:
			return args, nil
		case quote == 0 && (c == '"' || c == '\''):
			quote, started = c, true
		case c == '\\' && i+1 < len(s):
			i++
			arg.WriteByte(s[i])
			started = true
		default:
			arg.WriteByte(c)
			started = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if started {
		args = append(args, arg.String())
	}
	return args, nil
}

// matchAny reports whether name matches the Host patterns: one of them, and none negated.
func matchAny(name string, patterns []string) bool {
	return matchList(name, strings.Join(patterns, ","))
}

// matchList reports whether name matches a comma-separated pattern list as OpenSSH's
// match_pattern_list does (case-insensitively): a negated pattern (!p) that matches
// excludes it, else any pattern that matches includes it.
func matchList(name, list string) bool {
	name = strings.ToLower(name)
	matched := false
	for _, pat := range strings.Split(strings.ToLower(list), ",") {
		pat, negated := strings.CutPrefix(strings.TrimSpace(pat), "!")
		if wildcard(pat, name) {
			if negated {
				return false
			}
			matched = true
		}
	}
	return matched
}

// wildcard matches s against pat, where * is any run of characters and ? any one.
func wildcard(pat, s string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(pat[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pat[0] {
				return false
			}
		}
		pat, s = pat[1:], s[1:]
	}
	return s == ""
}

// tokens are the values of OpenSSH's %-tokens for a connection.
type tokens struct {
	home  string
	orig  string // %n
	host  string // %h
	port  string // %p
	user  string // %r
	alias string // HostKeyAlias, for %k
}

// expand resolves a leading ~/, ${VAR} and the tokens %% %d %h %i %k %L %l %n %p %r %u.
func (t tokens) expand(s string) (string, error) {
	if rest, ok := strings.CutPrefix(s, "~/"); ok {
		s = filepath.Join(t.home, rest)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: unterminated ${", s)
			}
			v, ok := os.LookupEnv(s[i+2 : i+end])
			if !ok {
				return "", fmt.Errorf("%q: environment variable %s is not set", s, s[i+2:i+end])
			}
			b.WriteString(v)
			i += end
		case s[i] != '%':
			b.WriteByte(s[i])
		case i+1 == len(s):
			return "", fmt.Errorf("%q: %% at the end", s)
		default:
			i++
			v, err := t.token(s[i])
			if err != nil {
				return "", fmt.Errorf("%q: %w", s, err)
			}
			b.WriteString(v)
		}
	}
	return b.String(), nil
}

func (t tokens) token(c byte) (string, error) {
	switch c {
	case '%':
		return "%", nil
	case 'd':
		return t.home, nil
	case 'h':
		return t.host, nil
	case 'i':
		return strconv.Itoa(os.Getuid()), nil
	case 'k':
		if t.alias != "" {
			return t.alias, nil
		}
		return t.orig, nil
	case 'L', 'l':
		name, err := os.Hostname()
		if c == 'L' {
			name, _, _ = strings.Cut(name, ".")
		}
		return name, err
	case 'n':
		return t.orig, nil
	case 'p':
		return t.port, nil
	case 'r':
		return t.user, nil
	case 'u':
		return localUser(), nil
	}
	return "", fmt.Errorf("unknown token %%%c", c)
}

// shell is the user's shell, which runs ProxyCommand and Match exec, as for ssh.
func shell() string {
	if s := os.Getenv("SHELL"); s != "" {
		return s
	}
	return "/bin/sh"
}
