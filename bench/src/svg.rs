//! A hand-written SVG of the lag distributions (empirical CDFs on a log time axis): no
//! plotting dependency to build on a shared two-core machine.

use crate::report::Series;

const W: f64 = 820.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Empirical CDF of each series (x: lag in ms, log scale; y: fraction of commits).
pub fn lag_cdf(series: &[Series]) -> String {
    let all = series.iter().flat_map(|s| s.lags_ms.iter().copied());
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in all {
        lo = lo.min(v.max(0.01));
        hi = hi.max(v);
    }
    if !lo.is_finite() || hi <= 0.0 {
        lo = 0.1;
        hi = 1000.0;
    }
    let (d0, d1) = (
        lo.log10().floor() as i32,
        hi.log10().ceil().max(lo.log10().floor() + 1.0) as i32,
    );
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |ms: f64| LEFT + (ms.max(10f64.powi(d0)).log10() - d0 as f64) / (d1 - d0) as f64 * pw;
    let y = |f: f64| TOP + (1.0 - f) * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Replication lag: commit → durable in the replica (CDF)</text>\n",
        LEFT + pw / 2.0
    );
    for d in d0..=d1 {
        let xv = x(10f64.powi(d));
        let label = if d >= 0 {
            format!("{}", 10u64.pow(d as u32))
        } else {
            format!("{}", 10f64.powi(d))
        };
        s.push_str(&format!(
            "<line x1=\"{xv:.1}\" y1=\"{TOP}\" x2=\"{xv:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n<text x=\"{xv:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            TOP + ph,
            TOP + ph + 18.0
        ));
    }
    for i in 0..=10 {
        let f = i as f64 / 10.0;
        let yv = y(f);
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{yv:.1}\" x2=\"{:.1}\" y2=\"{yv:.1}\" stroke=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{f:.1}</text>\n",
            LEFT + pw,
            if i == 5 || i == 10 { "#bbb" } else { "#eee" },
            LEFT - 6.0,
            yv + 4.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">lag (ms, log scale)</text>\n\
         <text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">fraction of commits</text>\n\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n",
        LEFT + pw / 2.0,
        H - 15.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    ));
    for (i, se) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = se.lags_ms.len();
        if n > 0 {
            let mut pts = String::new();
            let step = (n / 2000).max(1);
            for (j, v) in se.lags_ms.iter().enumerate().step_by(step) {
                pts.push_str(&format!(
                    "{:.1},{:.1} ",
                    x(*v),
                    y((j + 1) as f64 / n as f64)
                ));
            }
            pts.push_str(&format!("{:.1},{:.1}", x(se.lags_ms[n - 1]), y(1.0)));
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{pts}\"/>\n"
            ));
        }
        let ly = TOP + 10.0 + i as f64 * 22.0;
        let lx = LEFT + pw + 14.0;
        s.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{} (n={n})</text>\n",
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            esc(&se.label)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_polyline_per_non_empty_series() {
        let s = lag_cdf(&[
            Series {
                label: "a & b".into(),
                lags_ms: vec![0.5, 1.0, 3.0],
            },
            Series {
                label: "empty".into(),
                lags_ms: vec![],
            },
        ]);
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<polyline").count(), 1);
        assert!(s.contains("a &amp; b (n=3)"));
    }
}
