package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A Kind is a kind of store: the first word of its references. Everything the rest of ferry
// knows of a kind is here and in the abilities its stores have: a new kind is its package and
// one line where the program registers the kinds (package store/all).
type Kind struct {
	Name string
	// Syntax is the reference as --help and the README write it: "oci:DIR[:REF]".
	Syntax string
	// Doc says in a few words what the store is.
	Doc string
	// Remote says whether the store can be on a host (-H).
	Remote bool
	// Socket says whether a socket path in a host reference (ssh://HOST/PATH) names the
	// store's daemon there.
	Socket bool
	// Place says whether the reference names a place of its own (oci:DIR[:REF]): as an image
	// argument, it is a source of its own, not an image of the store --from names.
	Place bool
	// Default makes the kind the store a verb reads from or sends to when none is named.
	Default bool
	// Implicit, if set, says where a load goes when no store is named: the argument of the
	// first kind, in the grammar's order, whose Implicit returns no error.
	Implicit func(ctx context.Context) (arg string, err error)
	// Complete, when the kind's stores take complete images only (their inventory says
	// Complete), says why in a few words, as a send's summary shows it.
	Complete string
	// Env names the environment variables the kind's stores are opened with ($CONTAINERD_NAMESPACE):
	// a ferry helper opening the store on a host is given this machine's values.
	Env []string
	// Check checks arg, the reference after "NAME:" ("" for none), before anything is
	// opened or dialed.
	Check func(arg string) error
	// Open opens a store of this kind.
	Open func(ctx context.Context, arg string, env Env) (Store, error)
}

var kinds []Kind

// Register adds kinds of store, in the order the grammar's table lists them. The program
// registers them where it is assembled (package store/all).
func Register(ks ...Kind) {
	for _, k := range ks {
		if slices.ContainsFunc(kinds, func(o Kind) bool { return o.Name == k.Name }) {
			panic("store kind registered twice: " + k.Name)
		}
		kinds = append(kinds, k)
	}
}

// Kinds returns the registered kinds, in the order of the grammar's table.
func Kinds() []Kind { return slices.Clone(kinds) }

// DefaultRef is the reference of the store used when none is named.
func DefaultRef() string {
	for _, k := range kinds {
		if k.Default {
			return k.Name
		}
	}
	return ""
}

// Implicit returns the reference of the store a load goes to when none is named.
func Implicit(ctx context.Context) (string, error) {
	var why []string
	for _, k := range kinds {
		if k.Implicit == nil {
			continue
		}
		arg, err := k.Implicit(ctx)
		if err == nil {
			return strings.TrimSuffix(k.Name+":"+arg, ":"), nil
		}
		why = append(why, err.Error())
	}
	return "", fmt.Errorf("no store named, and none found: %s", strings.Join(why, "; "))
}

// ErrInvalidReference: a source or store reference that cannot be parsed. Nothing was read
// or written.
var ErrInvalidReference = errors.New("invalid reference")

// Syntaxes lists every kind's syntax, "docker, podman, oci:DIR[:REF], …", for messages.
func Syntaxes() string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Syntax)
	}
	return strings.Join(out, ", ")
}

// Parse splits a store reference into its kind and the rest.
func Parse(ref string) (Kind, string, error) {
	name, arg, _ := strings.Cut(ref, ":")
	for _, k := range kinds {
		if k.Name != name {
			continue
		}
		if k.Check != nil {
			if err := k.Check(arg); err != nil {
				return Kind{}, "", fmt.Errorf("%w: %s: %w", ErrInvalidReference, ref, err)
			}
		}
		return k, arg, nil
	}
	return Kind{}, "", fmt.Errorf("%w: unknown store %q: use %s", ErrInvalidReference, ref, Syntaxes())
}

// IsStore reports whether ref starts with a kind's name: "oci:…", "pool:…", "docker".
func IsStore(ref string) bool {
	_, _, err := Parse(ref)
	return err == nil
}

// OnHost checks that the kind can be on a host, and takes the socket path a host reference
// names, if any ("" for none).
func (k Kind) OnHost(socket string) error {
	if !k.Remote {
		return fmt.Errorf("%w: %s is reached from this machine, not on a host (-H)", ErrInvalidReference, k.Syntax)
	}
	if socket != "" && !k.Socket {
		return fmt.Errorf("%w: a socket path in the host reference goes with %s, not with %s", ErrInvalidReference, socketKinds(), k.Name)
	}
	return nil
}

// socketKinds names the kinds a socket path goes with: "docker or containerd".
func socketKinds() string {
	var names []string
	for _, k := range kinds {
		if k.Socket {
			names = append(names, k.Name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Open opens the store ref names in env.
func Open(ctx context.Context, ref string, env Env) (Store, error) {
	k, arg, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	if env.Host != nil {
		if err := k.OnHost(env.Socket); err != nil {
			return nil, err
		}
	}
	return k.Open(ctx, arg, env)
}
