// Package content is ferry's view below the layer: a layer's tar as the file contents it
// carries, cut into content-defined chunks, and the rest of its bytes (headers, padding, the
// end of the archive) kept as they are, so that chunks and those bytes give the layer back
// byte for byte, the same diffID.
//
// An Index records where the chunks of the layers a store holds lie (Scan fills it). A
// content delta (Make) carries, for each layer of a bundle, a recipe of raw bytes and chunk
// references, and only the chunks the index does not know; Rebuild reads the chunks it refers
// to from the store's own layers and gives the bundle back whole, every layer failing at its
// end unless it hashes to its diffID, so that a store that commits only what it read whole
// never takes a wrong one. Nothing here knows stores or hosts: a Base opens
// the store's layers.
package content
