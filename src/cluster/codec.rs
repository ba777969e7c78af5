//! How a Lance fragment scan travels to workers: the [`PhysicalExtensionCodec`] the distributed
//! planner uses for [`LanceScanExec`], as a tag byte, its spec in JSON and its output schema in
//! Arrow IPC.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

use crate::catalog::lance_scan::{LanceScanExec, LanceScanSpec};

const LANCE_SCAN: u8 = 1;

/// Encodes and decodes [`LanceScanExec`]; any other node is refused, for the next codec.
#[derive(Debug, Default, Clone, Copy)]
pub struct LanceScanCodec;

fn invalid(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("Lance scan codec: {what}"))
}

impl PhysicalExtensionCodec for LanceScanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&LANCE_SCAN, rest)) => {
                let (len, rest) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| invalid("a truncated Lance scan"))?;
                let (spec, schema) = rest.split_at(u32::from_le_bytes(*len) as usize);
                let spec: LanceScanSpec =
                    serde_json::from_slice(spec).map_err(|e| invalid(e.to_string()))?;
                let schema = StreamReader::try_new(Cursor::new(schema), None)?.schema();
                Ok(Arc::new(LanceScanExec::new(spec, schema)))
            }
            _ => Err(invalid("not a Lance scan")),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(scan) = node.as_any().downcast_ref::<LanceScanExec>() {
            let spec = serde_json::to_vec(scan.spec()).map_err(|e| invalid(e.to_string()))?;
            buf.push(LANCE_SCAN);
            buf.extend_from_slice(&(spec.len() as u32).to_le_bytes());
            buf.extend_from_slice(&spec);
            let schema: &Schema = &node.schema();
            StreamWriter::try_new(&mut *buf, schema)?.finish()?;
            return Ok(());
        }
        Err(invalid(format!("cannot send {} to a worker", node.name())))
    }
}
