// Package transfer is orchestration over ferry's stores (package store, reached through the
// kinds registered with it and the abilities its stores have): it reads images from their
// source once — a store that can be read, a bundle file — and writes them as a bundle (Save),
// copies them into a sink (Copy), loads a bundle stream into a store (Load), takes a store's
// inventory (Inventory, Have), and sends images to the stores of many hosts over SSH at once,
// each getting only what it lacks (Send).
//
// A send reads its sources once (send.go; cold.go forwards a docker save to the hosts that
// take it as it is read) and runs one value per host (host.go) through its stages: open,
// take stock, choose how the store is sent images once from what it can do (in steps,
// steps.go; as one stream; blob by blob with layers compressed, pack.go; blob by blob), then
// each source in turn. It owns the order of operations across stores and nothing of any one
// store: the bundle format belongs to archive, compression to compress, what is stored once
// to dedupe, each kind of store to its package under store/, SSH to sshconn.
package transfer
