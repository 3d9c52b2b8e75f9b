//! The matching pages' plots, drawn with `plotters` into SVG (text stays text, so no font is
//! needed to draw them and the browser renders the labels): the mean matched correlation over
//! depth, a layer's seeds × seeds consistency heatmap, and the histogram of its best-match
//! correlations.

use plotters::prelude::*;

/// Plot sizes in pixels.
const WIDE: (u32, u32) = (640, 320);
const SQUARE: (u32, u32) = (420, 380);

/// A drawing error, as text (plotters' error type is generic over the backend).
type PlotResult = Result<String, String>;

fn text_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The mean matched correlation of each layer (in order), with every pair of seeds' mean as dots.
pub(crate) fn depth_curve(layers: &[(String, f64, Vec<f64>)]) -> PlotResult {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, WIDE).into_drawing_area();
        root.fill(&WHITE).map_err(text_err)?;
        let n = layers.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption("mean matched correlation over depth", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..1.0f64)
            .map_err(text_err)?;
        let names: Vec<String> = layers.iter().map(|(l, _, _)| l.clone()).collect();
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("r")
            .draw()
            .map_err(text_err)?;
        let pairs = layers.iter().enumerate().flat_map(|(i, (_, _, pairs))| {
            pairs
                .iter()
                .map(move |&r| Circle::new((i as f64, r.max(0.0)), 2, BLUE.mix(0.3).filled()))
        });
        chart.draw_series(pairs).map_err(text_err)?;
        let means = layers
            .iter()
            .enumerate()
            .map(|(i, (_, mean, _))| (i as f64, mean.max(0.0)));
        chart
            .draw_series(LineSeries::new(means.clone(), BLUE.stroke_width(2)))
            .map_err(text_err)?;
        chart
            .draw_series(means.map(|p| Circle::new(p, 4, BLUE.filled())))
            .map_err(text_err)?;
        root.present().map_err(text_err)?;
    }
    Ok(svg)
}

/// The seeds × seeds matrix `r` (RDM agreement) as a heatmap labelled with its values: row `i` is
/// seed `i` from the top, column `j` seed `j` from the left (numbered from 1, as the rows' labels).
pub(crate) fn consistency_heatmap(layer: &str, models: &[String], r: &[Vec<f64>]) -> PlotResult {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SQUARE).into_drawing_area();
        root.fill(&WHITE).map_err(text_err)?;
        let n = models.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{layer}: representational consistency (r of RDMs)"),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(120)
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
            .map_err(text_err)?;
        let label = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) if *i < n => {
                let seed = if flip { n - 1 - i } else { *i };
                if flip {
                    format!(
                        "{} {}",
                        seed + 1,
                        models.get(seed).cloned().unwrap_or_default()
                    )
                } else {
                    (seed + 1).to_string()
                }
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&|v| label(v, false))
            .y_label_formatter(&|v| label(v, true))
            .draw()
            .map_err(text_err)?;
        let value =
            |i: usize, j: usize| r.get(i).and_then(|row| row.get(j)).copied().unwrap_or(0.0);
        let cells = (0..n).flat_map(|i| (0..n).map(move |j| (i, j)));
        chart
            .draw_series(cells.clone().map(|(i, j)| {
                let shade = (value(i, j).clamp(0.0, 1.0) * 255.0) as u8;
                let (top, bottom) = (SegmentValue::Exact(n - i), SegmentValue::Exact(n - 1 - i));
                Rectangle::new(
                    [
                        (SegmentValue::Exact(j), top),
                        (SegmentValue::Exact(j + 1), bottom),
                    ],
                    RGBColor(255 - shade, 255 - shade / 2, 255).filled(),
                )
            }))
            .map_err(text_err)?;
        if n <= 12 {
            chart
                .draw_series(cells.map(|(i, j)| {
                    Text::new(
                        format!("{:.2}", value(i, j)),
                        (SegmentValue::CenterOf(j), SegmentValue::CenterOf(n - 1 - i)),
                        ("sans-serif", 11),
                    )
                }))
                .map_err(text_err)?;
        }
        root.present().map_err(text_err)?;
    }
    Ok(svg)
}

/// The histogram of `values` (correlations) in bins of 0.05 over [-1, 1].
pub(crate) fn correlation_histogram(layer: &str, values: &[f32]) -> PlotResult {
    const BINS: usize = 40;
    let mut counts = [0usize; BINS];
    for &v in values {
        let bin = (((v.clamp(-1.0, 1.0) + 1.0) / 2.0) * BINS as f32) as usize;
        counts[bin.min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, WIDE).into_drawing_area();
        root.fill(&WHITE).map_err(text_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{layer}: best-match correlation of every channel with every other seed"),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(-1f64..1f64, 0usize..(top + top / 10 + 1))
            .map_err(text_err)?;
        chart
            .configure_mesh()
            .x_desc("r")
            .y_desc("channels")
            .draw()
            .map_err(text_err)?;
        let width = 2.0 / BINS as f64;
        chart
            .draw_series(counts.iter().enumerate().map(|(b, &count)| {
                let left = -1.0 + b as f64 * width;
                Rectangle::new([(left, 0), (left + width, count)], BLUE.mix(0.7).filled())
            }))
            .map_err(text_err)?;
        root.present().map_err(text_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_labels_as_text() {
        let curve = depth_curve(&[
            ("conv1".into(), 0.9, vec![0.88, 0.92]),
            ("fc6".into(), 0.4, vec![0.35, 0.45]),
        ])
        .unwrap();
        assert!(curve.starts_with("<svg"), "{curve}");
        // plotters writes each label on its own line inside its <text>
        let label = |svg: &str, text: &str| svg.contains(&format!("\n{text}\n</text>"));
        assert!(label(&curve, "conv1") && label(&curve, "fc6"), "{curve}");
        let models = vec!["s1".to_owned(), "s2".to_owned()];
        let heat =
            consistency_heatmap("conv2", &models, &[vec![1.0, 0.75], vec![0.75, 1.0]]).unwrap();
        assert!(label(&heat, "0.75") && label(&heat, "2 s2"), "{heat}");
        let hist = correlation_histogram("conv2", &[0.9, 0.91, -0.2, 1.0]).unwrap();
        assert!(hist.starts_with("<svg") && hist.contains("best-match correlation"));
    }
}
