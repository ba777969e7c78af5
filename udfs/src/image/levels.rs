//! From 8-bit levels to a model's input values: a processor's rescale and normalisation, worked
//! out once for each of the 256 levels of each channel and then looked up for every pixel.

/// The value each 8-bit level of each channel becomes, as transformers' processors compute it:
/// times the rescale factor in f64, then to f32; minus the channel's mean, over its standard
/// deviation, in f32.
#[derive(Debug, Clone)]
pub struct Levels([[f32; 256]; 3]);

impl Levels {
    /// The table for an optional rescale factor and optional per-channel (mean, std), as a
    /// processor's configuration gives them (the mean and std are taken to f32).
    pub fn new(rescale: Option<f64>, normalise: Option<([f64; 3], [f64; 3])>) -> Self {
        let normalise =
            normalise.map(|(mean, std)| (mean.map(|m| m as f32), std.map(|s| s as f32)));
        Self(std::array::from_fn(|c| {
            std::array::from_fn(|level| {
                let mut value = level as f32;
                if let Some(scale) = rescale {
                    value = (level as f64 * scale) as f32;
                }
                if let Some((mean, std)) = &normalise {
                    value = (value - mean[c]) / std[c];
                }
                value
            })
        }))
    }

    /// The value of `level` in `channel` (0, 1 or 2).
    #[inline]
    pub fn value(&self, channel: usize, level: u8) -> f32 {
        self.0[channel][usize::from(level)]
    }

    /// Interleaved RGB bytes as three planes of values, channels first.
    pub fn channels_first(&self, rgb: &[u8]) -> Vec<f32> {
        let plane = rgb.len() / 3;
        let mut out = vec![0f32; 3 * plane];
        let (red, rest) = out.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        for (i, pixel) in rgb.chunks_exact(3).enumerate() {
            red[i] = self.value(0, pixel[0]);
            green[i] = self.value(1, pixel[1]);
            blue[i] = self.value(2, pixel[2]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_rescaled_in_f64_then_normalised_per_channel() {
        let levels = Levels::new(Some(1.0 / 255.0), Some(([0.5, 0.25, 0.0], [0.5, 2.0, 1.0])));
        assert_eq!(levels.value(0, 255), 1.0);
        assert_eq!(levels.value(0, 0), -1.0);
        assert_eq!(levels.value(1, 51), ((51.0 / 255.0) as f32 - 0.25) / 2.0);
        assert_eq!(levels.value(2, 7), (7.0f64 / 255.0) as f32);
        assert_eq!(Levels::new(None, None).value(1, 200), 200.0);
        let planes = levels.channels_first(&[255, 0, 7, 0, 255, 0]);
        assert_eq!(
            planes,
            [
                1.0,
                -1.0,
                -0.125,
                (1.0 - 0.25) / 2.0,
                (7.0f64 / 255.0) as f32,
                0.0
            ]
        );
    }
}
