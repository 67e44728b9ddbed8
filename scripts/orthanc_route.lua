-- Orthanc routing rule for pneumo-yolo (Orthanc's "LuaScripts" setting): every chest radiograph
-- that arrives (modality CR or DX) goes to the node declared as "pneumo" in "DicomModalities".
-- Everything else stays put: the node's own results (SR, PR) never go back to it.
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  if modality == 'CR' or modality == 'DX' then
    SendToModality(instanceId, 'pneumo')
  end
end
