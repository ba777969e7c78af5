//! How table scans travel to workers: the [`PhysicalExtensionCodec`] the distributed planner
//! uses for [`LanceScanExec`] and [`DeltaFileScanExec`], each as a tag byte, its spec in JSON
//! (with its length) and its output schema in Arrow IPC.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

use crate::catalog::delta_scan::{DeltaFileScanExec, DeltaScanSpec};
use crate::catalog::lance_scan::{LanceScanExec, LanceScanSpec};

const LANCE_SCAN: u8 = 1;
const DELTA_SCAN: u8 = 2;

/// Encodes and decodes [`LanceScanExec`] and [`DeltaFileScanExec`]; any other node is refused,
/// for the next codec.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableScanCodec;

fn invalid(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("table scan codec: {what}"))
}

/// A spec and schema from `rest` (what follows the tag byte).
fn decode_parts<T: serde::de::DeserializeOwned>(rest: &[u8]) -> Result<(T, SchemaRef)> {
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| invalid("a truncated scan"))?;
    let (spec, schema) = rest.split_at(u32::from_le_bytes(*len) as usize);
    let spec = serde_json::from_slice(spec).map_err(|e| invalid(e.to_string()))?;
    let schema = StreamReader::try_new(Cursor::new(schema), None)?.schema();
    Ok((spec, schema))
}

/// Appends `tag`, `spec` and `schema` to `buf`.
fn encode_parts(
    tag: u8,
    spec: &impl serde::Serialize,
    schema: &Schema,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let spec = serde_json::to_vec(spec).map_err(|e| invalid(e.to_string()))?;
    buf.push(tag);
    buf.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    buf.extend_from_slice(&spec);
    StreamWriter::try_new(&mut *buf, schema)?.finish()?;
    Ok(())
}

impl PhysicalExtensionCodec for TableScanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&LANCE_SCAN, rest)) => {
                let (spec, schema): (LanceScanSpec, _) = decode_parts(rest)?;
                Ok(Arc::new(LanceScanExec::new(spec, schema)))
            }
            Some((&DELTA_SCAN, rest)) => {
                let (spec, schema): (DeltaScanSpec, _) = decode_parts(rest)?;
                Ok(Arc::new(DeltaFileScanExec::new(spec, schema)))
            }
            _ => Err(invalid("not a table scan")),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> Result<()> {
        let schema = node.schema();
        if let Some(scan) = node.as_any().downcast_ref::<LanceScanExec>() {
            return encode_parts(LANCE_SCAN, scan.spec(), &schema, buf);
        }
        if let Some(scan) = node.as_any().downcast_ref::<DeltaFileScanExec>() {
            return encode_parts(DELTA_SCAN, scan.spec(), &schema, buf);
        }
        Err(invalid(format!("cannot send {} to a worker", node.name())))
    }
}
