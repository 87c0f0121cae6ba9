package builtin

import (
	"fmt"
	"io/fs"

	"github.com/streamerio/streamer/ml"
)

// InjectModel makes the predict pipe find m for a model of that type and
// path in fsys, as if it had loaded it.
func InjectModel(typ string, fsys fs.FS, path string, m ml.Model) {
	models.Store(fmt.Sprintf("%s:%p:%s:", typ, fsys, path), m)
}
