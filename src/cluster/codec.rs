//! How table scans travel to workers: the [`PhysicalExtensionCodec`] the distributed planner
//! uses for [`LanceScanExec`] and [`DeltaFileScanExec`], each as a tag byte, its spec in JSON
//! (with its length) and its output schema in Arrow IPC. A table under the warehouse root
//! travels by its place under the root, so a worker may have the warehouse (a local folder, a
//! network mount) at another path than the coordinator.

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
use crate::catalog::Warehouse;

const LANCE_SCAN: u8 = 1;
const DELTA_SCAN: u8 = 2;

/// Encodes and decodes [`LanceScanExec`] and [`DeltaFileScanExec`]; any other node is refused,
/// for the next codec. Table locations travel relative to `warehouse`'s root (the
/// coordinator's when encoding, the worker's own when decoding).
#[derive(Debug, Clone)]
pub struct TableScanCodec {
    warehouse: Arc<Warehouse>,
}

impl TableScanCodec {
    /// A codec sending or reading locations relative to `warehouse`.
    pub fn new(warehouse: Arc<Warehouse>) -> Self {
        Self { warehouse }
    }
}

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
                let (mut spec, schema): (LanceScanSpec, _) = decode_parts(rest)?;
                spec.location = self.warehouse.resolve_location(&spec.location);
                Ok(Arc::new(LanceScanExec::new(spec, schema)))
            }
            Some((&DELTA_SCAN, rest)) => {
                let (mut spec, schema): (DeltaScanSpec, _) = decode_parts(rest)?;
                spec.location = self.warehouse.resolve_location(&spec.location);
                Ok(Arc::new(DeltaFileScanExec::new(spec, schema)))
            }
            _ => Err(invalid("not a table scan")),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> Result<()> {
        let schema = node.schema();
        if let Some(scan) = node.as_any().downcast_ref::<LanceScanExec>() {
            let spec = LanceScanSpec {
                location: self.warehouse.portable_location(&scan.spec().location),
                ..scan.spec().clone()
            };
            return encode_parts(LANCE_SCAN, &spec, &schema, buf);
        }
        if let Some(scan) = node.as_any().downcast_ref::<DeltaFileScanExec>() {
            let spec = DeltaScanSpec {
                location: self.warehouse.portable_location(&scan.spec().location),
                ..scan.spec().clone()
            };
            return encode_parts(DELTA_SCAN, &spec, &schema, buf);
        }
        Err(invalid(format!("cannot send {} to a worker", node.name())))
    }
}
