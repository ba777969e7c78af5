//! SmolVLM prompts: the chat form of one user turn, and the expansion of each `<image>` into the
//! tokens its frames take, as transformers' `Idefics3Processor.replace_image_token` writes them.

use crate::ModelError;

/// The special tokens an image expands into, and how many image tokens one frame takes
/// (`image_seq_len`: 64 for SmolVLM-256M/500M, 81 for SmolVLM-Instruct).
#[derive(Debug, Clone)]
pub struct ImageTokens {
    /// `<fake_token_around_image>`.
    pub fake: String,
    /// `<image>`.
    pub image: String,
    /// `<global-img>`.
    pub global: String,
    /// Image tokens per frame.
    pub seq_len: usize,
}

impl ImageTokens {
    /// SmolVLM's tokens with `seq_len` image tokens per frame.
    pub fn smolvlm(seq_len: usize) -> Self {
        Self {
            fake: "<fake_token_around_image>".into(),
            image: "<image>".into(),
            global: "<global-img>".into(),
            seq_len,
        }
    }

    /// The text that stands for one image cut into `rows` × `cols` tiles (0 × 0: one frame).
    pub fn expand(&self, rows: usize, cols: usize) -> String {
        let frame = self.image.repeat(self.seq_len);
        let global = format!(
            "{fake}{global}{frame}{fake}",
            fake = self.fake,
            global = self.global
        );
        if rows == 0 && cols == 0 {
            return global;
        }
        let mut text = String::new();
        for r in 1..=rows {
            for c in 1..=cols {
                text.push_str(&format!("{}<row_{r}_col_{c}>{frame}", self.fake));
            }
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&global);
        text
    }

    /// Replaces each `<image>` of `prompt`, in order, by the expansion of the image with that
    /// tile grid; the number of `<image>` must equal the number of grids.
    pub fn expand_prompt(
        &self,
        prompt: &str,
        grids: &[(usize, usize)],
    ) -> Result<String, ModelError> {
        let parts: Vec<&str> = prompt.split(self.image.as_str()).collect();
        if parts.len() - 1 != grids.len() {
            return Err(ModelError::Prompt(format!(
                "the prompt has {} {} but {} images were given",
                parts.len() - 1,
                self.image,
                grids.len()
            )));
        }
        let mut text = parts[0].to_string();
        for (part, (rows, cols)) in parts[1..].iter().zip(grids) {
            text.push_str(&self.expand(*rows, *cols));
            text.push_str(part);
        }
        Ok(text)
    }
}

/// SmolVLM's chat form of one user turn that shows an image and asks `question`, ending where
/// the assistant's answer begins.
pub fn chat_prompt(question: &str) -> String {
    format!("<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_needs_one_grid_per_image() {
        let tokens = ImageTokens::smolvlm(2);
        let err = tokens
            .expand_prompt("<image> and <image>", &[(0, 0)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 <image> but 1 images"), "{err}");
        assert_eq!(
            tokens.expand_prompt("a<image>b", &[(0, 0)]).unwrap(),
            "a<fake_token_around_image><global-img><image><image><fake_token_around_image>b"
        );
    }
}
