//! The extraction contract (REFERENCE §4): the prompt that asks SmolVLM for one JSON object of
//! garment attributes, and the parsing of its reply. Parsing takes the first balanced `{…}` in
//! the reply (the model may wrap it in a code fence); no JSON, or invalid JSON, is an
//! unsuccessful extraction with the raw reply kept. Values outside the vocabularies are kept
//! as given (the quality report counts them).

use serde_json::Value;

/// The closed vocabularies, by attribute.
pub const MATERIALS: &[&str] = &[
    "leather",
    "denim",
    "knit fabric",
    "woven fabric",
    "synthetic",
    "metal",
    "canvas",
    "unknown",
];
/// Patterns.
pub const PATTERNS: &[&str] = &[
    "solid color",
    "striped",
    "floral print",
    "geometric",
    "polka dots",
    "checkered",
    "abstract print",
    "no clear pattern",
];
/// Formality levels.
pub const FORMALITIES: &[&str] = &["formal", "business casual", "casual", "athletic"];
/// Style keywords (1–3 per product).
pub const STYLES: &[&str] = &[
    "athletic",
    "sporty",
    "vintage",
    "retro",
    "modern",
    "contemporary",
    "minimalist",
    "simple",
    "bohemian",
    "streetwear",
    "urban",
    "professional",
    "elegant",
    "sophisticated",
];
/// Visual details.
pub const DETAILS: &[&str] = &[
    "has pockets",
    "has buttons",
    "has zipper",
    "has hood",
    "has logo",
    "has drawstrings",
    "has belt",
    "has collar",
    "has laces",
];
/// Collars.
pub const COLLARS: &[&str] = &[
    "crew neck",
    "v-neck",
    "collar",
    "hooded",
    "turtleneck",
    "scoop neck",
    "no collar",
    "not applicable",
];
/// Sleeves.
pub const SLEEVES: &[&str] = &[
    "short sleeve",
    "long sleeve",
    "sleeveless",
    "three-quarter sleeve",
    "not applicable",
];
/// Fits.
pub const FITS: &[&str] = &[
    "fitted",
    "regular",
    "loose",
    "oversized",
    "cannot determine",
];
/// Confidence levels.
pub const CONFIDENCES: &[&str] = &["high", "medium", "low"];

/// The extraction columns with a closed vocabulary, by the name `smolvlm_extract` gives them.
pub const VOCABULARIES: &[(&str, &[&str])] = &[
    ("material", MATERIALS),
    ("pattern", PATTERNS),
    ("formality", FORMALITIES),
    ("style_keywords", STYLES),
    ("visual_details", DETAILS),
    ("collar_type", COLLARS),
    ("sleeve_length", SLEEVES),
    ("fit_type", FITS),
    ("confidence_material", CONFIDENCES),
];

/// The vocabulary of extraction column `field`.
pub fn vocabulary(field: &str) -> Option<&'static [&'static str]> {
    VOCABULARIES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(field))
        .map(|(_, values)| *values)
}

/// The default prompt: one JSON object with REFERENCE §4's keys and vocabularies.
pub fn default_prompt() -> String {
    let list = |v: &[&str]| v.join(", ");
    format!(
        "Look at this product photo and describe the item. Reply with one JSON object and nothing else, \
         with these keys and only these values:\n\
         \"material\": one of {};\n\
         \"pattern\": one of {};\n\
         \"formality\": one of {};\n\
         \"style_keywords\": a list of 1 to 3 of {};\n\
         \"details\": a list of any of {};\n\
         \"collar\": one of {};\n\
         \"sleeves\": one of {};\n\
         \"fit\": one of {};\n\
         \"confidence\": one of {} (how sure you are of the material).",
        list(MATERIALS),
        list(PATTERNS),
        list(FORMALITIES),
        list(STYLES),
        list(DETAILS),
        list(COLLARS),
        list(SLEEVES),
        list(FITS),
        list(CONFIDENCES),
    )
}

/// One parsed reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    /// `material`.
    pub material: Option<String>,
    /// `pattern`.
    pub pattern: Option<String>,
    /// `formality`.
    pub formality: Option<String>,
    /// `style_keywords`.
    pub style_keywords: Vec<String>,
    /// `details`.
    pub visual_details: Vec<String>,
    /// `collar`.
    pub collar_type: Option<String>,
    /// `sleeves`.
    pub sleeve_length: Option<String>,
    /// `fit`.
    pub fit_type: Option<String>,
    /// `confidence`.
    pub confidence_material: Option<String>,
    /// Whether the reply held a JSON object.
    pub extraction_success: bool,
    /// Why not, when it did not: one message for each question whose reply failed.
    pub errors: Vec<String>,
    /// The reply as generated.
    pub raw_response: String,
}

impl Extraction {
    /// One extraction from the replies to several questions about the same photo, in the order
    /// they were asked: each attribute is the first reply's that has it; the extraction succeeds
    /// when every reply held JSON, and its errors say which did not; the raw replies are kept
    /// one after the other, separated by a blank line.
    pub fn merge(replies: Vec<Extraction>) -> Extraction {
        let mut merged = Extraction {
            extraction_success: !replies.is_empty(),
            ..Default::default()
        };
        let mut raw = Vec::with_capacity(replies.len());
        for (question, reply) in replies.into_iter().enumerate() {
            let first = |kept: &mut Option<String>, new: Option<String>| {
                if kept.is_none() {
                    *kept = new;
                }
            };
            first(&mut merged.material, reply.material);
            first(&mut merged.pattern, reply.pattern);
            first(&mut merged.formality, reply.formality);
            first(&mut merged.collar_type, reply.collar_type);
            first(&mut merged.sleeve_length, reply.sleeve_length);
            first(&mut merged.fit_type, reply.fit_type);
            first(&mut merged.confidence_material, reply.confidence_material);
            if merged.style_keywords.is_empty() {
                merged.style_keywords = reply.style_keywords;
            }
            if merged.visual_details.is_empty() {
                merged.visual_details = reply.visual_details;
            }
            merged.extraction_success &= reply.extraction_success;
            for error in reply.errors {
                merged
                    .errors
                    .push(format!("question {}: {error}", question + 1));
            }
            raw.push(reply.raw_response);
        }
        merged.raw_response = raw.join("\n\n");
        merged
    }
}

/// The first balanced `{…}` of `text`, braces inside JSON strings ignored.
pub fn first_json_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

fn text_value(object: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match object.get(*k) {
        Some(Value::String(s)) => Some(s.trim().to_lowercase()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    })
}

fn list_value(object: &serde_json::Map<String, Value>, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .find_map(|k| object.get(*k))
        .map(|v| match v {
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(|s| s.trim().to_lowercase()))
                .collect(),
            Value::String(s) => s
                .split(',')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default()
}

/// Parses a reply.
pub fn parse_reply(raw: &str) -> Extraction {
    let failed = |error: String| Extraction {
        errors: vec![error],
        raw_response: raw.to_string(),
        ..Default::default()
    };
    let Some(json) = first_json_object(raw) else {
        return failed("no JSON object in the reply".into());
    };
    let object = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return failed("the reply's JSON is not an object".into()),
        Err(e) => return failed(format!("invalid JSON in the reply: {e}")),
    };
    Extraction {
        material: text_value(&object, &["material"]),
        pattern: text_value(&object, &["pattern"]),
        formality: text_value(&object, &["formality", "formality_level"]),
        style_keywords: list_value(&object, &["style_keywords", "style"]),
        visual_details: list_value(&object, &["details", "visual_details"]),
        collar_type: text_value(&object, &["collar", "collar_type"]),
        sleeve_length: text_value(&object, &["sleeves", "sleeve_length"]),
        fit_type: text_value(&object, &["fit", "fit_type"]),
        confidence_material: text_value(&object, &["confidence", "confidence_material"]),
        extraction_success: true,
        errors: Vec::new(),
        raw_response: raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_reply_parses_and_keeps_out_of_vocabulary_values() {
        let raw = "Sure!\n```json\n{\"material\": \"Knit fabric\", \"pattern\": \"striped\", \"formality\": \"casual\", \
                   \"style_keywords\": [\"sporty\", \"modern\"], \"details\": [\"has logo\", \"has {braces}\"], \
                   \"collar\": \"crew neck\", \"sleeves\": \"short sleeve\", \"fit\": \"baggy\", \"confidence\": \"high\"}\n```";
        let e = parse_reply(raw);
        assert!(e.extraction_success);
        assert_eq!(e.material.as_deref(), Some("knit fabric"));
        assert_eq!(e.style_keywords, ["sporty", "modern"]);
        assert_eq!(e.visual_details, ["has logo", "has {braces}"]);
        assert_eq!(
            e.fit_type.as_deref(),
            Some("baggy"),
            "kept although outside the vocabulary"
        );
        assert_eq!(e.confidence_material.as_deref(), Some("high"));
        assert_eq!(e.raw_response, raw);
    }

    #[test]
    fn replies_to_several_questions_merge_in_the_order_asked() {
        let materials = parse_reply(
            "{\"material\": \"denim\", \"pattern\": \"solid\", \"confidence\": \"high\"}",
        );
        let style = parse_reply("{\"formality\": \"casual\", \"style_keywords\": [\"classic\"], \"pattern\": \"striped\"}");
        let merged = Extraction::merge(vec![materials.clone(), style.clone()]);
        assert!(merged.extraction_success);
        assert_eq!(merged.material.as_deref(), Some("denim"));
        assert_eq!(
            merged.pattern.as_deref(),
            Some("solid"),
            "the first answer wins"
        );
        assert_eq!(merged.formality.as_deref(), Some("casual"));
        assert_eq!(merged.style_keywords, ["classic"]);
        assert!(merged.errors.is_empty());
        assert_eq!(
            merged.raw_response,
            format!("{}\n\n{}", materials.raw_response, style.raw_response)
        );
        let broken = Extraction::merge(vec![materials, parse_reply("no idea")]);
        assert!(!broken.extraction_success);
        assert_eq!(
            broken.material.as_deref(),
            Some("denim"),
            "what parsed is kept"
        );
        assert_eq!(broken.errors.len(), 1);
        assert!(broken.errors[0].starts_with("question 2: no JSON"));
        assert!(!Extraction::merge(Vec::new()).extraction_success);
    }

    #[test]
    fn no_or_broken_json_is_a_failure_that_keeps_the_reply() {
        let none = parse_reply("I cannot tell.");
        assert!(!none.extraction_success);
        assert!(none.errors[0].contains("no JSON"));
        assert_eq!(none.raw_response, "I cannot tell.");
        let broken = parse_reply("{\"material\": \"leather\", }");
        assert!(!broken.extraction_success);
        assert!(broken.errors[0].contains("invalid JSON"));
        let unbalanced = parse_reply("{\"material\": \"leather\"");
        assert!(!unbalanced.extraction_success);
    }

    #[test]
    fn the_default_prompt_names_every_key_and_value() {
        let prompt = default_prompt();
        for key in [
            "\"material\"",
            "\"pattern\"",
            "\"formality\"",
            "\"style_keywords\"",
            "\"details\"",
            "\"collar\"",
            "\"sleeves\"",
            "\"fit\"",
            "\"confidence\"",
        ] {
            assert!(prompt.contains(key), "{key}");
        }
        for value in MATERIALS.iter().chain(PATTERNS).chain(DETAILS).chain(FITS) {
            assert!(prompt.contains(value), "{value}");
        }
    }
}
