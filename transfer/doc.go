// Package transfer is orchestration over ferry's stores (package store and its kinds): it
// reads images from their source once — a store that can be read, a bundle file — and writes
// them as a bundle (Save), copies them into a sink (Copy), loads a bundle stream into a store
// (Load), takes a store's inventory (Inventory, Have), and sends images to the stores of many
// hosts over SSH at once, each getting only what it lacks (Send).
//
// It owns the order of operations across stores — read once, thin per destination, fan one
// compressed stream out to docker hosts that lack everything — and nothing of any one store:
// the bundle format belongs to archive, what is stored once to dedupe, each kind of store to
// its package under store/, SSH to sshconn.
package transfer
