package sshconn

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The ssh config keywords, lowercased as `ssh -G` prints them, by what ferry does with
// each. docs/ssh.md lists the same.
var (
	// read are the keywords ferry follows, with OpenSSH's meaning.
	read = words("hostname", "port", "user", "identityfile", "identityagent", "identitiesonly",
		"certificatefile", "proxycommand", "proxyjump", "userknownhostsfile", "globalknownhostsfile",
		"hostkeyalias", "stricthostkeychecking", "connecttimeout",
		"serveraliveinterval", "serveralivecountmax", "addressfamily", "tag")

	// refused are keywords that would change where ferry connects, or how it checks or
	// authenticates, if it ignored them: a value other than the ones listed is an error
	// naming the keyword.
	refused = map[string][]string{
		"canonicalizehostname": {"no", "false"},
		"proxyusefdpass":       {"no", "false"},
		"bindaddress":          nil,
		"bindinterface":        nil,
		"pkcs11provider":       {"none"},
		"securitykeyprovider":  {"internal"},
		"revokedhostkeys":      {"none"},
	}

	// ignored are keywords that change nothing ferry does: forwarding, terminals,
	// connection sharing (ferry opens its own connection, as `ssh -S none` does),
	// authentication methods ferry does not offer (a host that needs one refuses the keys
	// ferry offers, with ErrAuth), host key sources that could only add keys (ferry is then
	// stricter), algorithm lists (ferry negotiates its own, aes128-gcm first), and
	// HashKnownHosts (ferry records a new key under the host's name).
	ignored = words("addkeystoagent", "batchmode", "canonicaldomains", "canonicalizefallbacklocal",
		"canonicalizemaxdots", "canonicalizepermittedcnames", "casignaturealgorithms", "channeltimeout",
		"checkhostip", "ciphers", "clearallforwardings", "compression", "connectionattempts",
		"controlmaster", "controlpath", "controlpersist", "dynamicforward", "enableescapecommandline",
		"enablesshkeysign", "escapechar", "exitonforwardfailure", "fingerprinthash",
		"forkafterauthentication", "forwardagent", "forwardx11", "forwardx11timeout",
		"forwardx11trusted", "gatewayports", "gssapiauthentication", "gssapiclientidentity",
		"gssapidelegatecredentials", "gssapikeyexchange", "gssapikexalgorithms",
		"gssapirenewalforcesrekey", "gssapiserveridentity", "gssapitrustdns", "hashknownhosts",
		"hostbasedacceptedalgorithms", "hostbasedauthentication", "hostkeyalgorithms", "ipqos",
		"kbdinteractiveauthentication", "kbdinteractivedevices", "kexalgorithms",
		"knownhostscommand", "localcommand", "localforward", "loglevel", "logverbose", "macs",
		"nohostauthenticationforlocalhost", "numberofpasswordprompts", "obscurekeystroketiming",
		"passwordauthentication", "permitlocalcommand", "permitremoteopen",
		"preferredauthentications", "pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes",
		"pubkeyauthentication", "rekeylimit", "remotecommand", "remoteforward", "requesttty",
		"requiredrsasize", "sendenv", "sessiontype", "setenv", "stdinnull", "streamlocalbindmask",
		"streamlocalbindunlink", "syslogfacility", "tcpkeepalive", "tunnel", "tunneldevice",
		"updatehostkeys", "usekeychain", "verifyhostkeydns", "visualhostkey", "xauthlocation",
		// Deprecated spellings OpenSSH still accepts.
		"challengeresponseauthentication", "keepalive", "protocol", "useroaming",
		"useprivilegedport", "cipher", "rsaauthentication", "rhostsrsaauthentication",
		"compressionlevel", "dsaauthentication", "hostbasedkeytypes")
)

func words(w ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range w {
		m[k] = true
	}
	return m
}

// known reports whether ferry knows keyword (lowercased) as one of OpenSSH's.
func known(keyword string) bool {
	_, r := refused[keyword]
	return r || read[keyword] || ignored[keyword]
}

// checkRefused returns an error naming the first keyword of s whose value ferry cannot
// follow.
func checkRefused(s settings, host string) error {
	for _, k := range slices.Sorted(maps.Keys(refused)) {
		v, ok := s[k]
		if !ok || slices.Contains(refused[k], strings.ToLower(v[0])) {
			continue
		}
		fix := "remove it for this host"
		if ok := refused[k]; len(ok) > 0 {
			fix = fmt.Sprintf("pass -o %s=%s to ferry to connect without it", k, ok[0])
		}
		return fmt.Errorf("%w: the ssh config sets %s %s for %s, which changes how ssh connects and which ferry "+
			"does not follow (docs/ssh.md): %s", ErrUnsupported, k, v[0], host, fix)
	}
	return nil
}
