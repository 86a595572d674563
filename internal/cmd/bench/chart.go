package main

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"sort"
	"strconv"
)

// chartSeries are the P1 lines, in legend order, with their colours.
var chartSeries = []struct {
	Config string
	Color  color.RGBA
}{
	{cfgSQS, color.RGBA{205, 45, 40, 255}},
	{cfgIMDS, color.RGBA{35, 110, 200, 255}},
	{cfgBoth, color.RGBA{40, 150, 60, 255}},
	{cfgAlways, color.RGBA{230, 140, 0, 255}},
}

// writeChart draws P1 p99 against fleet size, both axes logarithmic, one
// line per configuration; a censored point (a lower bound) is a hollow
// square. Labels use a tiny built-in bitmap font.
func writeChart(path string, r *Results) error {
	const (
		W, H                     = 960, 560
		left, right, top, bottom = 90, 210, 30, 70
	)
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	black := color.RGBA{0, 0, 0, 255}
	grey := color.RGBA{210, 210, 210, 255}
	darkGrey := color.RGBA{120, 120, 120, 255}

	xMin, xMax := 0.0, 3.0  // log10 of 1 … 1000
	yMin, yMax := -2.0, 2.0 // log10 of 0.01 s … 100 s
	px := func(n float64) int {
		return left + int((math.Log10(n)-xMin)/(xMax-xMin)*float64(W-left-right))
	}
	py := func(s float64) int {
		v := math.Log10(math.Max(s, 0.01))
		v = math.Min(v, yMax)
		return H - bottom - int((v-yMin)/(yMax-yMin)*float64(H-top-bottom))
	}

	// Grid and ticks.
	for _, n := range []float64{1, 10, 100, 500, 1000} {
		x := px(n)
		vline(img, x, top, H-bottom, grey)
		label := trimFloat(n)
		text(img, x-textWidth(label)/2, H-bottom+10, label, black)
	}
	for _, s := range []float64{0.01, 0.1, 1, 10, 100} {
		y := py(s)
		hline(img, left, W-right, y, grey)
		label := trimFloat(s)
		text(img, left-10-textWidth(label), y-7, label, black)
	}
	// Targets: 1 s (1 node) and 2 s (500 nodes), dashed.
	for _, s := range []float64{1, 2} {
		y := py(s)
		for x := left; x < W-right; x += 8 {
			hline(img, x, min(x+4, W-right), y, darkGrey)
		}
	}
	text(img, W-right+6, py(2)-16, "2s", darkGrey)
	text(img, W-right+6, py(1)-2, "1s", darkGrey)
	// Axes.
	hline(img, left, W-right, H-bottom, black)
	vline(img, left, top, H-bottom, black)
	text(img, (left+W-right)/2-textWidth("fleet size")/2, H-bottom+36, "fleet size", black)
	text(img, 8, top-22, "p99 (s)", black)

	// Lines.
	for i, s := range chartSeries {
		type pt struct {
			n, v     float64
			censored bool
		}
		var pts []pt
		for _, c := range r.P1 {
			if c.Config == s.Config && c.P1.N > 0 {
				pts = append(pts, pt{float64(c.N), c.P1.P99, c.P1.Censored > 0 && c.P1.P99 >= c.P1.Max})
			}
		}
		sort.Slice(pts, func(a, b int) bool { return pts[a].n < pts[b].n })
		for j := 1; j < len(pts); j++ {
			line(img, px(pts[j-1].n), py(pts[j-1].v), px(pts[j].n), py(pts[j].v), s.Color)
		}
		for _, p := range pts {
			marker(img, px(p.n), py(p.v), s.Color, p.censored)
		}
		// Legend.
		ly := top + 10 + i*24
		line(img, W-right+20, ly+6, W-right+48, ly+6, s.Color)
		marker(img, W-right+34, ly+6, s.Color, false)
		text(img, W-right+56, ly, s.Config, black)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

// line draws a 2-pixel-wide line (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for {
		for ox := 0; ox < 2; ox++ {
			for oy := 0; oy < 2; oy++ {
				img.SetRGBA(x0+ox, y0+oy, c)
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

// marker draws a 9×9 square, hollow for a lower bound.
func marker(img *image.RGBA, x, y int, c color.RGBA, hollow bool) {
	for dx := -4; dx <= 4; dx++ {
		for dy := -4; dy <= 4; dy++ {
			edge := dx == -4 || dx == 4 || dy == -4 || dy == 4
			if !hollow || edge || (abs(dx) == 3 || abs(dy) == 3) {
				img.SetRGBA(x+dx, y+dy, c)
			} else {
				img.SetRGBA(x+dx, y+dy, color.RGBA{255, 255, 255, 255})
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// glyphs is a 5×7 bitmap font for the characters the chart uses.
var glyphs = map[rune][7]string{
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"####.", "....#", "....#", ".###.", "....#", "....#", "####."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'a': {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
	'b': {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####."},
	'd': {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####"},
	'e': {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
	'f': {"..##.", ".#...", "####.", ".#...", ".#...", ".#...", ".#..."},
	'h': {"#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#"},
	'i': {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
	'l': {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'm': {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"},
	'o': {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
	'p': {".....", ".....", "####.", "#...#", "####.", "#....", "#...."},
	'q': {".....", ".....", ".####", "#...#", ".####", "....#", "....#"},
	's': {".....", ".....", ".####", "#....", ".###.", "....#", "####."},
	't': {".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##."},
	'w': {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
	'y': {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."},
	'z': {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
}

const glyphScale = 2

func textWidth(s string) int { return len([]rune(s)) * 6 * glyphScale }

// text draws s with its top-left corner at (x, y), each font pixel as a
// glyphScale square.
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range s {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs[' ']
		}
		for row, bits := range g {
			for col, b := range bits {
				if b != '#' {
					continue
				}
				for dx := 0; dx < glyphScale; dx++ {
					for dy := 0; dy < glyphScale; dy++ {
						img.SetRGBA(x+col*glyphScale+dx, y+row*glyphScale+dy, c)
					}
				}
			}
		}
		x += 6 * glyphScale
	}
}
