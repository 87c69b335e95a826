package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The chart: two panels sharing the time axis, throughput (sent,
// confirmed, received msg/s) above and consumer latency (p50, p99 ms)
// below, one point per second. Plain SVG 1.1, no scripts, no external
// resources.

const (
	svgW      = 960
	svgH      = 780
	svgLeft   = 90
	svgRight  = 30
	svgFont   = `font-family="Helvetica, Arial, sans-serif"`
	colSent   = "#1f77b4"
	colConf   = "#2ca02c"
	colRecv   = "#ff7f0e"
	colP50    = "#9467bd"
	colP99    = "#d62728"
	colGrid   = "#e6e6e6"
	colAxis   = "#333333"
	colLegend = "#222222"
)

type svgSeries struct {
	name  string
	color string
	width float64
	dash  string       // stroke-dasharray, or ""
	pts   [][2]float64 // (t, v); NaN v breaks the line
}

type svgPanel struct {
	title  string
	yLabel string
	top    float64
	bottom float64
	series []svgSeries
	format func(float64) string
}

func escXML(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func writeSVG(w io.Writer, s *perfSummary) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	var sent, conf, recv, p50, p99 [][2]float64
	maxT := 1.0
	for _, pt := range s.Series {
		sent = append(sent, [2]float64{pt.T, pt.Sent})
		conf = append(conf, [2]float64{pt.T, pt.Confirmed})
		recv = append(recv, [2]float64{pt.T, pt.Received})
		l50, l99 := math.NaN(), math.NaN()
		if pt.Latency {
			l50, l99 = pt.P50, pt.P99
		}
		p50 = append(p50, [2]float64{pt.T, l50})
		p99 = append(p99, [2]float64{pt.T, l99})
		maxT = math.Max(maxT, pt.T)
	}
	thr := svgPanel{title: "Throughput", yLabel: "messages per second", top: 120, bottom: 400, format: fmtCount}
	thr.series = append(thr.series, svgSeries{"sent", colSent, 4, "", sent})
	if s.Confirm {
		thr.series = append(thr.series, svgSeries{"confirmed", colConf, 2.5, "7 4", conf})
	}
	thr.series = append(thr.series, svgSeries{"received", colRecv, 1.5, "", recv})
	lat := svgPanel{title: "Consumer latency (send to receive)", yLabel: "milliseconds", top: 490, bottom: 720, format: fmtPlain,
		series: []svgSeries{{"p50", colP50, 2, "", p50}, {"p99", colP99, 2, "", p99}}}

	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", svgW, svgH, svgW, svgH, svgFont)
	p(`<title>warren perf %s</title>`+"\n", escXML(s.Queue))
	p(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgW, svgH)
	mode := "no confirms"
	if s.Confirm {
		mode = fmt.Sprintf("confirms (window %d)", s.ConfirmWindow)
	}
	p(`<text x="%d" y="30" font-size="20" font-weight="bold" fill="%s">warren perf</text>`+"\n", svgLeft, colLegend)
	p(`<text x="%d" y="30" font-size="13" fill="#555555" text-anchor="end">%s</text>`+"\n", svgW-svgRight, escXML(
		"queue "+s.Queue+" · "+s.start.Format(time.DateTime)))
	setup := fmt.Sprintf("%d producer(s), %d consumer(s), %d-byte messages, %s, prefetch %d", s.Producers, s.Consumers, s.Size, mode, s.Prefetch)
	if s.RateLimit > 0 {
		setup += fmt.Sprintf(", rate limit %s msg/s", fmtCount(s.RateLimit))
	}
	p(`<text x="%d" y="52" font-size="13" fill="#555555">%s</text>`+"\n", svgLeft, escXML(setup))
	result := fmt.Sprintf("sent %d, confirmed %d, consumed %d of %d expected in %.1f s; latency p50 %s ms, p99 %s ms, max %s ms",
		s.Sent, s.Confirmed, s.Consumed, s.Expected, s.DurationSeconds, fmtMS(s.Latency.P50), fmtMS(s.Latency.P99), fmtMS(s.Latency.Max))
	if !s.OK {
		result += " · CHECK FAILED"
	}
	p(`<text x="%d" y="71" font-size="13" fill="#555555">%s</text>`+"\n", svgLeft, escXML(result))
	for _, panel := range []svgPanel{thr, lat} {
		writePanel(bw, panel, maxT)
	}
	p(`<text x="%d" y="%d" font-size="13" fill="%s" text-anchor="middle">time since start (s)</text>`+"\n",
		svgLeft+(svgW-svgLeft-svgRight)/2, svgH-22, colAxis)
	p("</svg>\n")
	return bw.Flush()
}

func writePanel(w io.Writer, pn svgPanel, maxT float64) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	x0, x1 := float64(svgLeft), float64(svgW-svgRight)
	y0, y1 := pn.top, pn.bottom
	maxV := 0.0
	for _, s := range pn.series {
		for _, pt := range s.pts {
			if !math.IsNaN(pt[1]) {
				maxV = math.Max(maxV, pt[1])
			}
		}
	}
	yTicks, yTop := niceTicks(maxV, 5)
	xTicks, _ := niceTicks(maxT, 10)
	xTop := maxT // the axis ends with the data
	for len(xTicks) > 1 && xTicks[len(xTicks)-1] > xTop*1.0001 {
		xTicks = xTicks[:len(xTicks)-1]
	}
	sx := func(t float64) float64 { return x0 + (x1-x0)*t/xTop }
	sy := func(v float64) float64 { return y1 - (y1-y0)*v/yTop }

	p(`<g>` + "\n")
	p(`<text x="%g" y="%g" font-size="15" font-weight="bold" fill="%s">%s</text>`+"\n", x0, y0-14, colLegend, escXML(pn.title))
	// Grid and tick labels.
	for _, v := range yTicks {
		y := sy(v)
		p(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n", x0, y, x1, y, colGrid)
		p(`<text x="%g" y="%.1f" font-size="12" fill="%s" text-anchor="end">%s</text>`+"\n", x0-8, y+4, colAxis, pn.format(v))
	}
	for _, t := range xTicks {
		x := sx(t)
		p(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="%s" stroke-width="1"/>`+"\n", x, y0, x, y1, colGrid)
		p(`<text x="%.1f" y="%g" font-size="12" fill="%s" text-anchor="middle">%s</text>`+"\n", x, y1+18, colAxis, fmtCount(t))
	}
	// Axes.
	p(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="1.5"/>`+"\n", x0, y1, x1, y1, colAxis)
	p(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="1.5"/>`+"\n", x0, y0, x0, y1, colAxis)
	cy := (y0 + y1) / 2
	p(`<text x="22" y="%g" font-size="13" fill="%s" text-anchor="middle" transform="rotate(-90 22 %g)">%s</text>`+"\n", cy, colAxis, cy, escXML(pn.yLabel))
	// Lines, with dots when there are few points.
	for _, s := range pn.series {
		var seg []string
		flush := func() {
			if len(seg) > 1 {
				p(`<polyline fill="none" stroke="%s" stroke-width="%g"%s stroke-linejoin="round" points="%s"/>`+"\n",
					s.color, s.width, dashAttr(s.dash), strings.Join(seg, " "))
			}
			seg = seg[:0]
		}
		for _, pt := range s.pts {
			if math.IsNaN(pt[1]) {
				flush()
				continue
			}
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", sx(pt[0]), sy(pt[1])))
		}
		flush()
		if len(s.pts) <= 120 {
			for _, pt := range s.pts {
				if !math.IsNaN(pt[1]) {
					p(`<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", sx(pt[0]), sy(pt[1]), s.color)
				}
			}
		}
	}
	if len(pn.series) == 0 || len(pn.series[0].pts) == 0 {
		p(`<text x="%g" y="%g" font-size="14" fill="#888888" text-anchor="middle">no data</text>`+"\n", (x0+x1)/2, cy)
	}
	// Legend, right-aligned above the panel.
	lx := x1
	for i := len(pn.series) - 1; i >= 0; i-- {
		s := pn.series[i]
		wText := float64(7*len(s.name) + 8)
		lx -= wText
		p(`<text x="%g" y="%g" font-size="13" fill="%s">%s</text>`+"\n", lx, y0-14, colLegend, escXML(s.name))
		lx -= 26
		p(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="%g"%s/>`+"\n", lx, y0-18, lx+20, y0-18, s.color, max(s.width, 2.5), dashAttr(s.dash))
		lx -= 14
	}
	p("</g>\n")
}

func dashAttr(d string) string {
	if d == "" {
		return ""
	}
	return ` stroke-dasharray="` + d + `"`
}

// niceTicks returns ticks from 0 to a round top at least max, about n
// steps of 1, 2 or 5 times a power of ten.
func niceTicks(max float64, n int) ([]float64, float64) {
	if !(max > 0) || math.IsInf(max, 0) {
		max = 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw*0.999 {
			step = m * mag
			break
		}
	}
	top := math.Ceil(max/step-1e-9) * step
	var ticks []float64
	for i := 0; float64(i)*step <= top+step/2; i++ {
		ticks = append(ticks, float64(i)*step)
	}
	return ticks, top
}

// fmtCount formats an axis value: 1500 as 1.5k, 2000000 as 2M.
func fmtCount(v float64) string {
	trim := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trim(math.Round(v/1e6*100)/100) + "M"
	case a >= 1e3:
		return trim(math.Round(v/1e3*100)/100) + "k"
	}
	return trim(math.Round(v*1000) / 1000)
}

// fmtPlain formats an axis value without suffixes (milliseconds).
func fmtPlain(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64) }
