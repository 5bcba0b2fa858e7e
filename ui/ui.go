package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files: "/" is the page, "/app.js" and
// "/style.css" what it loads. Mount it under a prefix with
// http.StripPrefix (the node serves it at /ui/). The page calls the APIs
// at the path above that prefix, so a proxy may add one in front.
//
// Responses carry a strict Content-Security-Policy (the page's own
// scripts and styles only, no inline script, fetches to the same origin),
// an ETag (a hash of the file) and Cache-Control: no-cache, so that a
// browser revalidates after an upgrade.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags := map[string]string{}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	etags["/"] = etags["/index.html"]
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if tag, ok := etags[r.URL.Path]; ok {
			h.Set("ETag", tag)
		}
		if strings.HasSuffix(r.URL.Path, "/index.html") {
			// FileServer would redirect it to "./"; serve it as it is.
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimSuffix(r.URL.Path, "index.html")
			r = r2
		}
		files.ServeHTTP(w, r)
	})
}
