package dedupe

import (
	"bytes"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FuzzReadInventory: the inventory `--have` reads comes from across the gap. What reads
// must write, and what it writes must read back to the same bytes.
func FuzzReadInventory(f *testing.F) {
	inv := NewInventory(StoreDocker)
	d := v1.Hash{Algorithm: "sha256", Hex: string(bytes.Repeat([]byte("ab"), 32))}
	inv.Add([]v1.Hash{d}, []v1.Hash{d}, []v1.Hash{d})
	inv.AddNamed([]v1.Hash{d}, []string{"app:1", "app:latest"})
	var seed bytes.Buffer
	if err := inv.Write(&seed); err != nil {
		f.Fatal(err)
	}
	f.Add(seed.Bytes())
	f.Add([]byte(`{"version":1,"store":"oci","diffIDs":["x"],"images":[{"digests":null}],"content":{"layers":[],"chunks":""}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := ReadInventory(bytes.NewReader(data))
		if err != nil {
			return
		}
		var once, twice bytes.Buffer
		if err := inv.Write(&once); err != nil {
			t.Fatal(err)
		}
		again, err := ReadInventory(bytes.NewReader(once.Bytes()))
		if err != nil {
			t.Fatalf("an inventory written does not read back: %v", err)
		}
		if err := again.Write(&twice); err != nil || !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("an inventory read back writes other bytes (%v):\n%s\n%s", err, once.Bytes(), twice.Bytes())
		}
	})
}
