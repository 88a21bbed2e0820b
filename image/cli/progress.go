package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/docker/go-units"

	"github.com/hearth-cloud/hearth/image"
)

// progress draws pull and push progress as the docker CLI does: on a
// terminal one line per layer, redrawn in place, with a bar in bytes;
// elsewhere one plain line per change of status.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	order []string
	lines map[string]string
	last  map[string]string
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, lines: map[string]string{}, last: map[string]string{}}
}

func (p *progress) update(e image.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.ID == "" {
		fmt.Fprintln(p.w, e.Status)
		return
	}
	line := e.ID + ": " + e.Status
	if e.Total > 0 && (e.Status == "Downloading" || e.Status == "Pushing") {
		line += " " + bar(e.Current, e.Total)
	}
	if !p.tty {
		// Plain output: status changes only, not every byte count.
		if p.last[e.ID] != e.Status {
			p.last[e.ID] = e.Status
			fmt.Fprintln(p.w, e.ID+": "+e.Status)
		}
		return
	}
	if _, ok := p.lines[e.ID]; !ok {
		p.order = append(p.order, e.ID)
		p.lines[e.ID] = line
		fmt.Fprintln(p.w, line)
		return
	}
	p.lines[e.ID] = line
	// Up to the layer's line, rewrite it, and back down.
	up := 0
	for i := len(p.order) - 1; i >= 0 && p.order[i] != e.ID; i-- {
		up++
	}
	up++
	fmt.Fprintf(p.w, "\x1b[%dA\r\x1b[2K%s\x1b[%dB\r", up, line, up)
}

// bar renders [=====>     ] 1.2MB/4.5MB.
func bar(cur, total int64) string {
	const width = 50
	n := int(float64(width) * float64(cur) / float64(total))
	if n > width {
		n = width
	}
	b := strings.Repeat("=", n)
	if n < width {
		b += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("[%s] %s/%s", b, units.HumanSize(float64(cur)), units.HumanSize(float64(total)))
}
