package main

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
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
// line per configuration, dashed lines at the 1 s and 2 s targets; a
// censored point (a lower bound) is a hollow square.
func writeChart(path string, r *Results) error {
	const W, H, left, right, top, bottom = 960, 560, 90, 210, 30, 70
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	black, grey, dark := color.RGBA{0, 0, 0, 255}, color.RGBA{210, 210, 210, 255}, color.RGBA{120, 120, 120, 255}
	px := func(n float64) int { return left + int(math.Log10(n)/3*(W-left-right)) } // 1 … 1000
	py := func(s float64) int {                                                     // 0.01 s … 100 s
		return H - bottom - int((math.Min(math.Log10(math.Max(s, 0.01)), 2)+2)/4*(H-top-bottom))
	}
	for _, n := range []float64{1, 10, 100, 500, 1000} {
		rect(img, px(n), top, px(n), H-bottom, grey)
		label := strconv.FormatFloat(n, 'f', -1, 64)
		text(img, px(n)-len(label)*6, H-bottom+10, label, black)
	}
	for _, s := range []float64{0.01, 0.1, 1, 10, 100} {
		rect(img, left, py(s), W-right, py(s), grey)
		label := strconv.FormatFloat(s, 'f', -1, 64)
		text(img, left-10-len(label)*12, py(s)-7, label, black)
	}
	for _, s := range []float64{1, 2} {
		for x := left; x < W-right; x += 8 {
			rect(img, x, py(s), min(x+4, W-right), py(s), dark)
		}
		text(img, W-right+6, py(s)-2-14*int(s-1), strconv.Itoa(int(s))+"s", dark)
	}
	rect(img, left, H-bottom, W-right, H-bottom, black)
	rect(img, left, top, left, H-bottom, black)
	text(img, (left+W-right)/2-60, H-bottom+36, "fleet size", black)
	text(img, 8, top-22, "p99 (s)", black)
	for i, s := range chartSeries {
		var cells []P1Cell
		for _, c := range r.P1 {
			if c.Config == s.Config && c.P1.N > 0 {
				cells = append(cells, c)
			}
		}
		slices.SortFunc(cells, func(a, b P1Cell) int { return a.N - b.N })
		for j, c := range cells {
			if j > 0 {
				line(img, px(float64(cells[j-1].N)), py(cells[j-1].P1.P99), px(float64(c.N)), py(c.P1.P99), s.Color)
			}
			marker(img, px(float64(c.N)), py(c.P1.P99), s.Color, c.P1.Censored > 0 && c.P1.P99 >= c.P1.Max)
		}
		ly := top + 16 + i*24
		line(img, W-right+20, ly, W-right+48, ly, s.Color)
		marker(img, W-right+34, ly, s.Color, false)
		text(img, W-right+56, ly-6, s.Config, black)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// rect fills the rectangle from (x0, y0) to (x1, y1) inclusive.
func rect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(img, image.Rect(x0, y0, x1+1, y1+1), &image.Uniform{c}, image.Point{}, draw.Src)
}

// line draws a 2-pixel-wide line.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x, y := x0+(x1-x0)*i/steps, y0+(y1-y0)*i/steps
		rect(img, x, y, x+1, y+1, c)
	}
}

// marker draws a 9×9 square, hollow for a lower bound.
func marker(img *image.RGBA, x, y int, c color.RGBA, hollow bool) {
	rect(img, x-4, y-4, x+4, y+4, c)
	if hollow {
		rect(img, x-2, y-2, x+2, y+2, color.RGBA{255, 255, 255, 255})
	}
}

func abs(v int) int { return max(v, -v) }

// glyphs is a 5×7 bitmap font for the characters the chart uses: 35 bits
// a glyph, row by row from the top, the leftmost pixel first.
var glyphs = map[rune]uint64{
	'0': 0x3a33ae62e, '1': 0x11842108e, '2': 0x3a211111f, '3': 0x78217043e, '4': 0x08ca97c42,
	'5': 0x7e1e0862e, '6': 0x1910f462e, '7': 0x7c2222108, '8': 0x3a317462e, '9': 0x3a317844c,
	'.': 0x00000018c, '(': 0x088842082, ')': 0x208210888, '-': 0x0000f8000, 'a': 0x000e0be2f,
	'b': 0x421e8c63e, 'd': 0x042f8c62f, 'e': 0x000e8fe0e, 'f': 0x191e42108, 'h': 0x421e8c631,
	'i': 0x100c2108e, 'l': 0x30842108e, 'm': 0x001aad6b5, 'o': 0x000e8c62e, 'p': 0x001e8fa10,
	'q': 0x000f8bc21, 's': 0x000f8383e, 't': 0x211e42126, 'w': 0x00118d6aa, 'y': 0x00118bc2e,
	'z': 0x001f1111f,
}

// text draws s with its top-left corner at (x, y), each font pixel a 2×2
// square.
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range s {
		for i := range 35 {
			if glyphs[r]>>(34-i)&1 == 1 {
				rect(img, x+i%5*2, y+i/5*2, x+i%5*2+1, y+i/5*2+1, c)
			}
		}
		x += 12
	}
}
